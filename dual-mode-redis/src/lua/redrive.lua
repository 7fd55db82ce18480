-- Re-drive a parked entry into its lane's stream. KEYS: the normal lane's stream, state sets,
-- parked stream, the job's record (or the parked stream again when the entry has no id), the
-- high and the low lanes' streams. ARGV: parked id, raw field prefix, job id
-- (may be empty). Copies the original fields back with the attempt reset to 1. Returns the
-- new id or nil.

local r = redis.call('XRANGE', KEYS[6], ARGV[1], ARGV[1])
if #r == 0 then return false end
local f = r[1][2]
local out = {}
local plen = string.len(ARGV[2])
for i = 1, #f, 2 do
  if string.sub(f[i], 1, plen) == ARGV[2] then
    local name = string.sub(f[i], plen + 1)
    local value = f[i + 1]
    if name == 'attempt' then value = '1' end
    table.insert(out, name)
    table.insert(out, value)
  end
end
if #out == 0 then return false end
local entry = redis.call('XADD', lane_stream(field(out, 'lane'), 8, 9), '*', unpack(out))
redis.call('XDEL', KEYS[6], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[7], 'cancel', 'finished', 'result')
  redis.call('PERSIST', KEYS[7])
  transit(KEYS[7], ARGV[3], 'queued', now_ms(), nil, {'entry', entry, 'attempt', '1'})
end
return entry
