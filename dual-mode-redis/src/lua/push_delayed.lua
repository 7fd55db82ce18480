-- A delayed push. KEYS: stream, state sets, delayed set, the entry's hash, record, unique key
-- (or the record again). ARGV: job id, unique ttl ms, not-before ms (0: none), delay ms, n,
-- n record items, then the entry's fields. The job id is the delayed member. Returns
-- `{1, due ms}` or `{0, holder id}`.

local id, n = ARGV[1], tonumber(ARGV[5])
local holder = claim_unique(KEYS[9], id, tonumber(ARGV[2]))
if holder then return {0, holder} end
local now = now_ms()
local at = tonumber(ARGV[3])
if at == 0 then at = now + tonumber(ARGV[4]) end
delay(KEYS[6], KEYS[7], id, at, unpack(ARGV, 6 + n))
local fields = slice(6, n)
table.insert(fields, 'due')
table.insert(fields, at)
transit(KEYS[8], id, 'delayed', now, nil, fields)
return {1, at}
