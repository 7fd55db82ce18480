-- The due members of the delayed set, by the server's clock. KEYS: delayed set. ARGV: at
-- most this many.

return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
