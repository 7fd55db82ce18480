-- Moves due delayed entries into their lanes' streams. KEYS: the normal lane's stream, state
-- sets, delayed set, the high and the low lanes' streams, then per job its entry's hash and
-- its record. ARGV: the job ids. Entries no longer due or gone are skipped. Returns how many
-- moved.

local now = now_ms()
local moved = 0
for i, id in ipairs(ARGV) do
  local hkey, rec = KEYS[8 + 2 * i - 1], KEYS[8 + 2 * i]
  local due = redis.call('ZSCORE', KEYS[6], id)
  if due and tonumber(due) <= now then
    local fields = redis.call('HGETALL', hkey)
    if #fields > 0 then
      local entry = redis.call('XADD', lane_stream(field(fields, 'lane'), 7, 8), '*', unpack(fields))
      if redis.call('EXISTS', rec) == 1 then transit(rec, id, 'queued', now, nil, {'entry', entry}) end
      moved = moved + 1
    end
    redis.call('DEL', hkey)
    redis.call('ZREM', KEYS[6], id)
  end
end
return moved
