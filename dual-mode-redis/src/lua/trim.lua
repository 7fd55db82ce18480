-- Forget ended jobs whose records expired. KEYS: the done, parked and cancelled sets. ARGV: per
-- set, how long its records are kept in ms (empty: no time limit). Returns how many ids were
-- removed.

local now = now_ms()
local removed = 0
for i = 1, #KEYS do
  local age = tonumber(ARGV[i])
  if age then removed = removed + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - age) end
end
return removed
