-- Gives back a job's slot of its key and wakes the oldest waiter that is in the delayed set
-- (due now). KEYS: the key's holders, its waiters, the delayed set. ARGV: job id. Returns
-- 1 when a waiter was woken.

redis.call('ZREM', KEYS[1], ARGV[1])
local now = now_ms()
for _ = 1, 10 do
  local next = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #next == 0 then return 0 end
  redis.call('ZREM', KEYS[2], next[1])
  if redis.call('ZADD', KEYS[3], 'XX', 'CH', now, next[1]) == 1 then return 1 end
end
return 0
