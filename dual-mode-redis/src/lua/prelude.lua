-- Shared functions, loaded ahead of the scripts (scripts.rs says which). `owned` is the
-- fencing check; `transit` moves a record between states.
--
-- Scripts that move job records between states share one layout: KEYS[1] is the stream and
-- KEYS[2..5] the state sets (running, done, parked, cancelled, as in STATES); the keys of the
-- script follow. A job's record is written by the same script as the transition it records,
-- so the two never disagree.

local STATES = {running = 2, done = 3, parked = 4, cancelled = 5}
local TERMINAL = {done = true, parked = true, cancelled = true}

-- The pending entry `id` of `group` ({id, consumer, idle ms, delivery count}), or nil when no
-- consumer holds it.
local function pending(stream, group, id)
  return redis.call('XPENDING', stream, group, id, id, 1)[1]
end

-- Who holds the entry `id`: 'owned' when `consumer` does with delivery count `token` (a claim
-- by anyone, this consumer included, increments the count, so a stale run is fenced too),
-- 'other' when another consumer or another delivery does, 'gone' when no one does (it was
-- acknowledged, or the group was recreated).
local function holder(stream, group, consumer, id, token)
  local p = pending(stream, group, id)
  if not p then return 'gone' end
  if p[2] ~= consumer or tonumber(p[4]) ~= tonumber(token) then return 'other' end
  return 'owned'
end

local function owned(stream, group, consumer, id, token)
  return holder(stream, group, consumer, id, token) == 'owned'
end

-- The answer for a run that no longer holds its entry: 3 when its record shows that this
-- consumer already wrote `state` for this entry (an earlier try whose reply was lost), else
-- 2 (gone) or 0 (held by another).
local function refused(rec, consumer, entry, state, who)
  if redis.call('HGET', rec, 'state') == state and redis.call('HGET', rec, 'worker') == consumer
    and redis.call('HGET', rec, 'entry') == entry then
    return 3
  end
  if who == 'gone' then return 2 end
  return 0
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The server's time in ms as text, for writing: built from the digits, not formatted from a
-- number (redis.call formats every number it is given with %.17g).
local function now_text()
  local t = redis.call('TIME')
  return t[1] .. string.sub(string.rep('0', 6 - #t[2]) .. t[2], 1, 3)
end

-- What the queue keeps of jobs that ended in one state, `<age ms>:<count>` (either empty for
-- no limit), as the age and the count (nil: no limit).
local function keep_of(keep)
  local age, count = string.match(keep, '^(%d*):(%d*)$')
  return tonumber(age), tonumber(count)
end

-- How long an ended job's record lives, in ms (nil: until the state's count drops it), as
-- `age` and `count` say (see `keep_of`): a record marked `keep` (by a waiter, or its push:
-- `pin` ms) lives at least that long, and leaves the state's set when the count drops it,
-- not the store.
local function ended_ttl(pin, age, count)
  if pin and age then return math.max(pin, age) end
  if pin and count then return pin end
  return age
end

-- Keeps the record `rec` of job `id`, just ended and in the set `set`, as `age` and `count`
-- say: deleted (and out of the set) when the state keeps none and no one marked it, else
-- living as `ended_ttl` says.
local function keep_record(rec, id, set, age, count)
  local pin = tonumber(redis.call('HGET', rec, 'keep'))
  if count == 0 then
    redis.call('ZREM', set, id)
    if not pin then
      redis.call('DEL', rec)
      return
    end
  end
  local ttl = ended_ttl(pin, age, count)
  if ttl then redis.call('PEXPIRE', rec, ttl) else redis.call('PERSIST', rec) end
end

-- Drops the oldest members of the ended set `set` beyond `count` (nil: no limit) and their
-- records, named `prefix` .. id, unless marked `keep`.
local function trim_to(set, count, prefix)
  if not count or count == 0 then return end
  local over = redis.call('ZCARD', set) - count
  if over <= 0 then return end
  for _, old in ipairs(redis.call('ZRANGE', set, 0, over - 1)) do
    if redis.call('HEXISTS', prefix .. old, 'keep') == 0 then redis.call('DEL', prefix .. old) end
  end
  redis.call('ZREMRANGEBYRANK', set, 0, over - 1)
end

-- Moves the record `rec` of job `id` to `state` with the field-value pairs of `fields`. An
-- ended job's record is then kept as `keep` (see `keep_of`) says.
local function transit(rec, id, state, now, keep, fields)
  local old = redis.call('HGET', rec, 'state')
  if old ~= state then
    if old and STATES[old] then redis.call('ZREM', KEYS[STATES[old]], id) end
    if STATES[state] then redis.call('ZADD', KEYS[STATES[state]], now, id) end
  end
  redis.call('HSET', rec, 'state', state, 'updated', now, unpack(fields))
  if TERMINAL[state] then
    local age, count = keep_of(keep)
    keep_record(rec, id, KEYS[STATES[state]], age, count)
    trim_to(KEYS[STATES[state]], count, string.sub(rec, 1, #rec - #id))
  end
end

-- Puts job `id` in the delayed set `set`, due at `due` (ms), with the fields of its next entry
-- (the remaining arguments) in its hash `hkey`, which they replace whole.
local function delay(set, hkey, id, due, ...)
  redis.call('DEL', hkey)
  redis.call('HSET', hkey, ...)
  redis.call('ZADD', set, due, id)
end

-- Claims the unique key `ukey` for job `id` for `uttl` ms (0: the job is not unique); returns
-- the id of the job that holds it already, if one does.
local function claim_unique(ukey, id, uttl)
  if uttl == 0 then return nil end
  local holder = redis.call('GET', ukey)
  if holder then return holder end
  redis.call('SET', ukey, id, 'PX', uttl)
  return nil
end

-- Releases a unique key held by job `id` (only if it still names this job).
local function release(ukey, id, has_unique)
  if has_unique == '1' and redis.call('GET', ukey) == id then redis.call('DEL', ukey) end
end

-- The end of a job: its record, its unique key, and a wake-up for waiters (the channel
-- carries space-separated job ids).
local function finish(rec, ukey, id, has_unique, state, now, keep, channel, fields)
  transit(rec, id, state, now, keep, fields)
  release(ukey, id, has_unique)
  redis.call('PUBLISH', channel, id)
end

-- The value of `name` in the flat field-value list `f`.
local function field(f, name)
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end

-- The ready stream of `lane`: KEYS[hi] for high, KEYS[lo] for low, KEYS[1] (the normal
-- lane's stream) otherwise.
local function lane_stream(lane, hi, lo)
  if lane == 'high' then return KEYS[hi] end
  if lane == 'low' then return KEYS[lo] end
  return KEYS[1]
end

-- ARGV[from .. from + n - 1] as a table.
local function slice(from, n)
  local out = {}
  for i = from, from + n - 1 do table.insert(out, ARGV[i]) end
  return out
end
