-- Lease renewal of a batch of running jobs. KEYS: stream, then per job its record. ARGV:
-- group, consumer, then id-token pairs. Per pair returns 1 (renewed), 0 (no longer owned) or
-- 2 (renewed, and a cancellation was requested).
--
-- `XCLAIM ... JUSTID` by the owner resets the idle time without incrementing the delivery
-- count, so the fencing tokens stay valid.

local ids, out = {}, {}
local k = 0
for i = 3, #ARGV, 2 do
  k = k + 1
  if owned(KEYS[1], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1]) then
    table.insert(ids, ARGV[i])
    if redis.call('HGET', KEYS[1 + k], 'cancel') == '1' then table.insert(out, 2) else table.insert(out, 1) end
  else
    table.insert(out, 0)
  end
end
if #ids > 0 then
  -- unpack expands to all its values only as the last argument
  table.insert(ids, 'JUSTID')
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
end
return out
