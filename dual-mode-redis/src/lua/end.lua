-- A run that ends without success: retried later, parked or cancelled. KEYS: stream, state
-- sets, record, unique key (or the record again), then for `retrying`/`delayed` the delayed
-- set and the new entry's hash, for `parked` the parked stream and its dropped-entries
-- counter. ARGV: group, consumer, what is kept of the state (`<age ms>:<count>`), channel, entry id, token, job id (empty: no
-- record), has unique, state, delay ms (for `parked`: the parked stream's cap), n, n record
-- items, then the fields of the new delayed or parked entry. The parked stream is trimmed to
-- its cap exactly (parking is rare; an exact cap is one a test and an operator can rely on),
-- and the entries dropped are counted. Returns 1, or as ack.lua does when refused.

local group, consumer, keep, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entry, token, id, has_unique, state = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local n = tonumber(ARGV[11])
local who = holder(KEYS[1], group, consumer, entry, token)
if who ~= 'owned' then
  if id == '' then
    if who == 'gone' then return 2 end
    return 0
  end
  return refused(KEYS[6], consumer, entry, state, who)
end
local now = now_ms()
local fields = slice(12, n)
if state == 'parked' then
  local before = redis.call('XLEN', KEYS[8])
  redis.call('XADD', KEYS[8], 'MAXLEN', ARGV[10], '*', unpack(ARGV, 12 + n))
  local dropped = before + 1 - redis.call('XLEN', KEYS[8])
  if dropped > 0 then redis.call('INCRBY', KEYS[9], dropped) end
elseif state == 'retrying' or state == 'delayed' then
  local due = now + tonumber(ARGV[10])
  delay(KEYS[8], KEYS[9], id, due, unpack(ARGV, 12 + n))
  table.insert(fields, 'due')
  table.insert(fields, due)
end
redis.call('XACK', KEYS[1], group, entry)
redis.call('XDEL', KEYS[1], entry)
if id ~= '' then
  if TERMINAL[state] then
    table.insert(fields, 'finished')
    table.insert(fields, now)
    finish(KEYS[6], KEYS[7], id, has_unique, state, now, keep, channel, fields)
  else
    transit(KEYS[6], id, state, now, keep, fields)
  end
end
return 1
