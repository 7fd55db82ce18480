-- Forget a schedule. KEYS: the index of schedules, its paused, resumed and last-tick keys.
-- ARGV: its name. Returns 1 if it was registered, else 0.

redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return redis.call('HDEL', KEYS[1], ARGV[1])
