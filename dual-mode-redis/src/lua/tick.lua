-- A schedule tick. KEYS: the job's lane's stream, state sets, the tick's dedupe key, the
-- schedule's last-tick key, the job's record, the schedule's paused key, the job's unique key
-- (or the record again). ARGV: dedupe ttl ms, tick ms, job id, n, unique ttl ms (0: not
-- unique), n record items, then the entry's fields. Returns the new entry id, nil if another
-- scheduler already enqueued this tick, 0 while the schedule is paused (its tick is not
-- marked), or `{'held', holder id}` when the unique key is held (the tick is marked).

if redis.call('EXISTS', KEYS[9]) == 1 then return 0 end
if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[1]) then return false end
local last = tonumber(redis.call('GET', KEYS[7]) or '0') or 0
if tonumber(ARGV[2]) > last then redis.call('SET', KEYS[7], ARGV[2]) end
local holder = claim_unique(KEYS[10], ARGV[3], tonumber(ARGV[5]))
if holder then return {'held', holder} end
local n = tonumber(ARGV[4])
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6 + n))
local fields = slice(6, n)
table.insert(fields, 'entry')
table.insert(fields, entry)
transit(KEYS[8], ARGV[3], 'queued', now_ms(), nil, fields)
return entry
