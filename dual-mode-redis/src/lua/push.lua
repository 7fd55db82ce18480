-- A push. KEYS: stream, record, unique key (or the record again). ARGV: job id, unique ttl
-- ms (0: not unique), n, n record field-value items, then the entry's fields. The job id is
-- new, so the record is written whole: there is no earlier state to leave. Returns `{1,
-- entry id}`, or `{0, id of the job holding the unique key}`.

local id, n = ARGV[1], tonumber(ARGV[3])
local holder = claim_unique(KEYS[3], id, tonumber(ARGV[2]))
if holder then return {0, holder} end
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4 + n))
redis.call('HSET', KEYS[2], 'state', 'queued', 'updated', now_text(), 'entry', entry, unpack(ARGV, 4, 3 + n))
return {1, entry}
