-- Resume a schedule. KEYS: its paused key, its resumed key. ARGV: now ms. Returns 1 if it
-- was paused, 0 if not; the resume time is kept so a catch-up never covers the pause.

if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
