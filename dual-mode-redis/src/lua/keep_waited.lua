-- A waiter's mark: the record of a job that has not ended is kept at least ARGV[1] ms once it
-- ends (the longer of that and the push's own `keep`). KEYS: the record. Returns 1 when the
-- job has a record (ended or not), 0 when it has none.

local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
if not TERMINAL[state] and (tonumber(redis.call('HGET', KEYS[1], 'keep')) or 0) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'keep', ARGV[1])
end
return 1
