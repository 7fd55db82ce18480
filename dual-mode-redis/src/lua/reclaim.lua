-- Take back this consumer's own pending entries that no run of this process holds (a read
-- or claim whose reply was lost still executed on the server). KEYS: stream. ARGV: group,
-- consumer, then entry ids. Each is claimed again by the same consumer, which raises its
-- delivery count, so a forgotten run could not write. Returns `{{id, fields, count}...}`.

local out = {}
local ids = {}
for i = 3, #ARGV do
  local p = pending(KEYS[1], ARGV[1], ARGV[i])
  if p and p[2] == ARGV[2] then table.insert(ids, ARGV[i]) end
end
if #ids == 0 then return out end
for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    table.insert(out, {e[1], e[2], pending(KEYS[1], ARGV[1], e[1])[4]})
  end
end
return out
