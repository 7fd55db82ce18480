-- Success of a batch of runs. KEYS: stream, state sets, then per run its record and unique
-- key (or the record again). ARGV: group, consumer, what is kept of done jobs (`<age
-- ms>:<count>`), channel, the batch's lowest and highest entry ids, how many of this
-- consumer's pending entries to read between them, whether a record's `keep` mark can matter
-- (`1`: it is read), then per run: entry id, token, job id, has unique, result bytes, start
-- ms, attempt. Acks and deletes each entry this consumer still owns with that token and
-- records `done` with the result; per run returns 1, or when refused 0 (another holds it), 2
-- (gone) or 3 (this consumer's earlier try landed). All checks happen before any write, so
-- the result is the same as one by one.

local group, consumer, channel = ARGV[1], ARGV[2], ARGV[4]
local age, count = keep_of(ARGV[3])
local marks = ARGV[8] == '1'
local now = now_text()
-- The delivery counts of this consumer's pending entries in the batch's range, read in one
-- call; an entry not among them (another's, gone, or past a range read cut short) is looked
-- up alone.
local mine = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], group, ARGV[5], ARGV[6], ARGV[7], consumer)) do
  mine[p[1]] = p[4]
end
local out, acked, runs = {}, {}, {}
local k = 0
for i = 9, #ARGV, 7 do
  k = k + 1
  local entry, token = ARGV[i], ARGV[i + 1]
  local who
  if mine[entry] == nil then
    who = holder(KEYS[1], group, consumer, entry, token)
  elseif mine[entry] == tonumber(token) then
    who = 'owned'
  else
    who = 'other'
  end
  if who == 'owned' then
    table.insert(acked, entry)
    table.insert(runs, {i, k})
    table.insert(out, 1)
  else
    table.insert(out, refused(KEYS[5 + 2 * k - 1], consumer, entry, 'done', who))
  end
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
end
-- The records as the queue keeps done jobs (three calls per job; one, a `DEL`, for a record
-- not kept), then the sets and the wake-up once for the whole batch.
local ids, scored = {}, {}
local prefix
for _, r in ipairs(runs) do
  local i, k = r[1], r[2]
  local rec, id = KEYS[5 + 2 * k - 1], ARGV[i + 2]
  local pin = marks and tonumber(redis.call('HGET', rec, 'keep')) or nil
  if count == 0 and not pin then
    redis.call('DEL', rec)
  else
    redis.call('HSET', rec, 'state', 'done', 'updated', now, 'finished', now, 'result', ARGV[i + 4],
      'started', ARGV[i + 5], 'attempt', ARGV[i + 6], 'worker', consumer, 'entry', ARGV[i])
    local ttl = ended_ttl(pin, age, count)
    if ttl then redis.call('PEXPIRE', rec, ttl) else redis.call('PERSIST', rec) end
    if count ~= 0 then
      table.insert(scored, now)
      table.insert(scored, id)
    end
  end
  release(KEYS[5 + 2 * k], id, ARGV[i + 3])
  table.insert(ids, id)
  prefix = prefix or string.sub(rec, 1, #rec - #id)
end
if #ids > 0 then
  redis.call('ZREM', KEYS[STATES.running], unpack(ids))
  if #scored > 0 then
    redis.call('ZADD', KEYS[STATES.done], unpack(scored))
    trim_to(KEYS[STATES.done], count, prefix)
  end
  redis.call('PUBLISH', channel, table.concat(ids, ' '))
end
return out
