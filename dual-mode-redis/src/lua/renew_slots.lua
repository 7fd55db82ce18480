-- Extends the leases of slots held by running jobs. KEYS: the keys' holders, one per job.
-- ARGV: lease ms, then per job its id. A slot that expired meanwhile is not taken again.

local expiry = now_ms() + tonumber(ARGV[1])
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[i + 1]) end
return #KEYS
