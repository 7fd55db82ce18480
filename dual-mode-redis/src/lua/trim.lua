-- Forget ended jobs whose records expired. KEYS: the done, parked and cancelled sets. ARGV:
-- the record ttl ms. Returns how many ids were removed.

local before = now_ms() - tonumber(ARGV[1])
local removed = 0
for i = 1, #KEYS do removed = removed + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', before) end
return removed
