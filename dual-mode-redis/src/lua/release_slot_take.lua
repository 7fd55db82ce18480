-- Gives back a job's slot of its key and takes the key's oldest waiter off the waiters, for
-- a queue whose waiters wait in other partitions' delayed sets. KEYS: the key's holders, its
-- waiters. ARGV: job id. Returns the waiter's id, or nil.

redis.call('ZREM', KEYS[1], ARGV[1])
local next = redis.call('ZRANGE', KEYS[2], 0, 0)
if #next == 0 then return false end
redis.call('ZREM', KEYS[2], next[1])
return next[1]
