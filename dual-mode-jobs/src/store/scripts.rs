//! The Lua scripts; each runs atomically on the Redis server.
//!
//! Every key a script touches is passed in `KEYS`, and all keys of one queue share the hash
//! tag `{queue}`, so the scripts also hold on a Redis Cluster.
//!
//! Scripts that move job records between states share one layout: `KEYS[1]` is the stream
//! and `KEYS[2..5]` the state sets (running, done, parked, cancelled; see [`STATE_SETS`]); the
//! keys of the script follow. (A push writes a new record in a state without a set, so its
//! script takes neither.) A job's record is written by the same script
//! as the transition it records, so the two never disagree.

use std::sync::LazyLock;

use redis::Script;

/// The job states that have a set, in the order of their sets in `KEYS[2..5]`. Queued jobs
/// are listed from the stream, delayed and retrying ones from the delayed set.
pub(crate) const STATE_SETS: [&str; 4] = ["running", "done", "parked", "cancelled"];

/// Shared functions. `owned` is the fencing check; `transit` moves a record between states.
const PRELUDE: &str = r"
local STATES = {running = 2, done = 3, parked = 4, cancelled = 5}
local TERMINAL = {done = true, parked = true, cancelled = true}

-- Who holds the entry `id`: 'owned' when `consumer` does with delivery count `token` (a claim
-- by anyone, this consumer included, increments the count, so a stale run is fenced too),
-- 'other' when another consumer or another delivery does, 'gone' when no one does (it was
-- acknowledged, or the group was recreated).
local function holder(stream, group, consumer, id, token)
  local p = redis.call('XPENDING', stream, group, id, id, '1')
  if #p == 0 then return 'gone' end
  if p[1][2] ~= consumer or tonumber(p[1][4]) ~= tonumber(token) then return 'other' end
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

-- Moves the record `rec` of job `id` to `state` with the field-value pairs of `fields`. An
-- ended job's record lives `ttl` ms more (the sweep trims the sets of ended jobs to match).
local function transit(rec, id, state, now, ttl, fields)
  local old = redis.call('HGET', rec, 'state')
  if old ~= state then
    if old and STATES[old] then redis.call('ZREM', KEYS[STATES[old]], id) end
    if STATES[state] then redis.call('ZADD', KEYS[STATES[state]], now, id) end
  end
  redis.call('HSET', rec, 'state', state, 'updated', now, unpack(fields))
  if TERMINAL[state] then redis.call('PEXPIRE', rec, ttl) end
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
local function finish(rec, ukey, id, has_unique, state, now, ttl, channel, fields)
  transit(rec, id, state, now, ttl, fields)
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
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// A push. KEYS: stream, record, unique key (or the record again). ARGV: job id, unique ttl
/// ms (0: not unique), n, n record field-value items, then the entry's fields. The job id is
/// new, so the record is written whole: there is no earlier state to leave. Returns `{1,
/// entry id}`, or `{0, id of the job holding the unique key}`.
pub(crate) static PUSH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, n = ARGV[1], tonumber(ARGV[3])
local holder = claim_unique(KEYS[3], id, tonumber(ARGV[2]))
if holder then return {0, holder} end
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4 + n))
redis.call('HSET', KEYS[2], 'state', 'queued', 'updated', now_text(), 'entry', entry, unpack(ARGV, 4, 3 + n))
return {1, entry}
",
    )
});

/// A delayed push. KEYS: stream, state sets, delayed set, the entry's hash, record, unique key
/// (or the record again). ARGV: job id, unique ttl ms, not-before ms (0: none), delay ms, n,
/// n record items, then the entry's fields. The job id is the delayed member. Returns
/// `{1, due ms}` or `{0, holder id}`.
pub(crate) static PUSH_DELAYED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local id, n = ARGV[1], tonumber(ARGV[5])
local holder = claim_unique(KEYS[9], id, tonumber(ARGV[2]))
if holder then return {0, holder} end
local now = now_ms()
local at = tonumber(ARGV[3])
if at == 0 then at = now + tonumber(ARGV[4]) end
redis.call('DEL', KEYS[7])
redis.call('HSET', KEYS[7], unpack(ARGV, 6 + n))
redis.call('ZADD', KEYS[6], at, id)
local fields = slice(6, n)
table.insert(fields, 'due')
table.insert(fields, at)
transit(KEYS[8], id, 'delayed', now, 0, fields)
return {1, at}
",
    )
});

/// The due members of the delayed set, by the server's clock. KEYS: delayed set. ARGV: at
/// most this many.
pub(crate) static DUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
",
    )
});

/// Reads new entries for a consumer from a queue's lanes, in the order given, unless the queue
/// is paused. KEYS: the three lanes' streams in reading order, the queue's pause key. ARGV:
/// group, consumer, at most this many entries in all. Returns `{1}` when paused; else `{0,
/// packed}`, where `packed` is msgpack (`cmsgpack`, which every Redis since 2.6 has) of
/// `{entries of the first lane, of the second, of the third, last ids}`: each lane's entries
/// `XRANGE`-shaped, and the last ids (the newest entry id of each lane, `0-0` for an empty
/// one, in `KEYS` order) given when fewer entries than asked were found: a blocking `XREAD`
/// from them wakes at the next push to any lane. Packed, the entries cross to the client as
/// one string instead of a reply value per field.
pub(crate) static READ: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[4]) == 1 then return {1} end
local left = tonumber(ARGV[3])
local out = {0}
for i = 1, 3 do
  local got = {}
  if left > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[i], '>')
    if r then
      got = r[1][2]
      left = left - #got
    end
  end
  table.insert(out, got)
end
-- A read that ends short read every lane to its end: a lane's newest entry is the last one
-- read from it, or, when none was, the newest one another consumer got.
local last = {}
if left > 0 then
  for i = 1, 3 do
    local got = out[i + 1]
    if #got > 0 then
      table.insert(last, got[#got][1])
    else
      local r = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', '1')
      if #r > 0 then table.insert(last, r[1][1]) else table.insert(last, '0-0') end
    end
  end
end
table.insert(out, last)
return {0, cmsgpack.pack({out[2], out[3], out[4], last})}
",
    )
});

/// Moves due delayed entries into their lanes' streams. KEYS: the normal lane's stream, state
/// sets, delayed set, the high and the low lanes' streams, then per job its entry's hash and
/// its record. ARGV: the job ids. Entries no longer due or gone are skipped. Returns how many
/// moved.
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
local moved = 0
for i, id in ipairs(ARGV) do
  local hkey, rec = KEYS[8 + 2 * i - 1], KEYS[8 + 2 * i]
  local due = redis.call('ZSCORE', KEYS[6], id)
  if due and tonumber(due) <= now then
    local fields = redis.call('HGETALL', hkey)
    if #fields > 0 then
      local entry = redis.call('XADD', lane_stream(field(fields, 'lane'), 7, 8), '*', unpack(fields))
      if redis.call('EXISTS', rec) == 1 then transit(rec, id, 'queued', now, 0, {'entry', entry}) end
      moved = moved + 1
    end
    redis.call('DEL', hkey)
    redis.call('ZREM', KEYS[6], id)
  end
end
return moved
",
    )
});

/// Marks runs as running, once they have run for a moment (a job shorter than that goes from
/// queued to done directly). KEYS: stream, state sets, then per run its record. ARGV: group,
/// consumer, record ttl, then per run: entry id, token, job id, attempt, start ms. Per run
/// returns 1 (marked), 0 (not owned: the run lost its lease) or 2 (a cancellation was
/// requested: not marked, the run is told).
pub(crate) static MARK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local group, consumer, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
local k = 0
for i = 4, #ARGV, 5 do
  k = k + 1
  local entry, token, id, attempt, started = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local rec = KEYS[5 + k]
  if not owned(KEYS[1], group, consumer, entry, token) then
    table.insert(out, 0)
  else
    local r = redis.call('HMGET', rec, 'state', 'cancel')
    if r[1] == 'cancelled' or r[2] == '1' then
      table.insert(out, 2)
    else
      transit(rec, id, 'running', now, ttl,
        {'started', started, 'worker', consumer, 'attempt', attempt, 'entry', entry})
      table.insert(out, 1)
    end
  end
end
return out
",
    )
});

/// Lease renewal of a batch of running jobs. KEYS: stream, then per job its record. ARGV:
/// group, consumer, then id-token pairs. Per pair returns 1 (renewed), 0 (no longer owned) or
/// 2 (renewed, and a cancellation was requested).
///
/// `XCLAIM ... JUSTID` by the owner resets the idle time without incrementing the delivery
/// count, so the fencing tokens stay valid.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ids, out = {}, {}
local k = 0
for i = 3, #ARGV, 2 do
  k = k + 1
  if owned(KEYS[1], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1]) then
    table.insert(ids, ARGV[i])
    if redis.call('HGET', KEYS[1 + k], 'cancel') == '1' then table.insert(out, 2) else table.insert(out, 1) end
  else
    table.insert(out, 0)
  end
end
if #ids > 0 then
  -- unpack expands to all its values only as the last argument
  table.insert(ids, 'JUSTID')
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
end
return out
",
    )
});

/// Success of a batch of runs. KEYS: stream, state sets, then per run its record and unique
/// key (or the record again). ARGV: group, consumer, record ttl, channel, the batch's lowest
/// and highest entry ids, how many of this consumer's pending entries to read between them,
/// then per run: entry id, token, job id, has unique, result bytes, start ms, attempt. Acks
/// and deletes each entry this consumer still owns with that token and records `done` with
/// the result; per run returns 1, or when refused 0 (another holds it), 2 (gone) or 3 (this
/// consumer's earlier try landed). All checks happen before any write, so the result is the
/// same as one by one.
pub(crate) static ACK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local group, consumer, ttl, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
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
for i = 8, #ARGV, 7 do
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
-- The records, then the sets and the wake-up once for the whole batch: two calls per job.
local ids, scored = {}, {}
for _, r in ipairs(runs) do
  local i, k = r[1], r[2]
  local rec, id = KEYS[5 + 2 * k - 1], ARGV[i + 2]
  redis.call('HSET', rec, 'state', 'done', 'updated', now, 'finished', now, 'result', ARGV[i + 4],
    'started', ARGV[i + 5], 'attempt', ARGV[i + 6], 'worker', consumer, 'entry', ARGV[i])
  redis.call('PEXPIRE', rec, ttl)
  release(KEYS[5 + 2 * k], id, ARGV[i + 3])
  table.insert(ids, id)
  table.insert(scored, now)
  table.insert(scored, id)
end
if #ids > 0 then
  redis.call('ZREM', KEYS[STATES.running], unpack(ids))
  redis.call('ZADD', KEYS[STATES.done], unpack(scored))
  redis.call('PUBLISH', channel, table.concat(ids, ' '))
end
return out
",
    )
});

/// A run that ends without success: retried later, parked or cancelled. KEYS: stream, state
/// sets, record, unique key (or the record again), then for `retrying`/`delayed` the delayed
/// set and the new entry's hash, for `parked` the parked stream and its dropped-entries
/// counter. ARGV: group, consumer, record ttl, channel, entry id, token, job id (empty: no
/// record), has unique, state, delay ms (for `parked`: the parked stream's cap), n, n record
/// items, then the fields of the new delayed or parked entry. The parked stream is trimmed to
/// its cap exactly (parking is rare; an exact cap is one a test and an operator can rely on),
/// and the entries dropped are counted. Returns 1, or as [`ACK`] when refused.
pub(crate) static END: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local group, consumer, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
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
  redis.call('DEL', KEYS[9])
  redis.call('HSET', KEYS[9], unpack(ARGV, 12 + n))
  redis.call('ZADD', KEYS[8], due, id)
  table.insert(fields, 'due')
  table.insert(fields, due)
end
redis.call('XACK', KEYS[1], group, entry)
redis.call('XDEL', KEYS[1], entry)
if id ~= '' then
  if TERMINAL[state] then
    table.insert(fields, 'finished')
    table.insert(fields, now)
    finish(KEYS[6], KEYS[7], id, has_unique, state, now, ttl, channel, fields)
  else
    transit(KEYS[6], id, state, now, ttl, fields)
  end
end
return 1
",
    )
});

/// A cancellation by id. KEYS: the normal lane's stream, state sets, delayed set, the job's
/// delayed hash, record, unique key (or the record again), the high and the low lanes'
/// streams. ARGV: group, record ttl, channel, job id, has unique.
/// Returns `removed` (it will never run), `requested` (it runs or was just delivered: it is
/// told), `unknown`, or the state of an ended job.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local group, ttl, channel, id, has_unique = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local rec = KEYS[8]
local state = redis.call('HGET', rec, 'state')
if not state then return 'unknown' end
if TERMINAL[state] then return state end
local now = now_ms()
if state == 'running' then
  redis.call('HSET', rec, 'cancel', '1')
  return 'requested'
end
if state == 'queued' then
  local entry = redis.call('HGET', rec, 'entry')
  local stream = lane_stream(redis.call('HGET', rec, 'lane'), 10, 11)
  -- No group yet (no worker ever ran): nothing was delivered.
  local p = entry and redis.pcall('XPENDING', stream, group, entry, entry, 1)
  if type(p) == 'table' and not p.err and #p > 0 then
    -- Delivered, not started yet: the worker's start sees the flag.
    redis.call('HSET', rec, 'cancel', '1')
    return 'requested'
  end
  if entry then redis.call('XDEL', stream, entry) end
else
  redis.call('ZREM', KEYS[6], id)
  redis.call('DEL', KEYS[7])
end
finish(rec, KEYS[9], id, has_unique, 'cancelled', now, ttl, channel, {'finished', now, 'cancel', '1'})
return 'removed'
",
    )
});

/// Jobs at their gates as they are about to start: their rate limits and their keys'
/// concurrency, job after job as if one by one. KEYS, per job: the pause key of its rate key,
/// its key's holders (a sorted set of job ids by lease expiry) and waiters (job ids by when
/// they began to wait), then its buckets; keys a job has no use for are given as any key of
/// the queue. ARGV: the holders' lease ms, then per job: reserved (`1`: its start was reserved
/// already), has pause key, its key's concurrency (0: none), job id, bucket count, then per
/// bucket its interval and tolerance in ms.
///
/// GCRA: a bucket has room at `t` when `t >= tat - tolerance`, and a start at `t` moves its
/// `tat` to `max(tat, t) + interval`. The start is the first moment every bucket has room and
/// the pause is over; it is reserved in every bucket at once. A reserved start goes ahead
/// without drawing again unless the key is paused. A job that may start now also needs one of
/// its key's slots: holders whose lease expired are dropped first (a crashed worker holds
/// none for long), and without a free slot the job becomes a waiter and nothing is drawn.
/// Returns per job the wait in ms (0: start now, holding a slot when the key has a
/// concurrency), or -1 to wait for a slot.
pub(crate) static GATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = now_ms()
local lease = tonumber(ARGV[1])
-- Buckets and pauses are read once per batch and buckets written once at its end: the jobs
-- of one key in a batch cost one GET, one PTTL and one SET together.
local tats, dirty, pauses = {}, {}, {}
local function tat_of(key)
  if tats[key] == nil then tats[key] = tonumber(redis.call('GET', key) or '0') or 0 end
  return tats[key]
end
local function pause_left(key)
  if pauses[key] == nil then pauses[key] = redis.call('PTTL', key) end
  return pauses[key]
end

-- One job, its keys from KEYS[kb + 1] and its arguments from ARGV[ab].
local function gate(kb, ab, nb)
  local holders, waiters = KEYS[kb + 2], KEYS[kb + 3]
  local start = now
  if ARGV[ab + 1] == '1' then
    local left = pause_left(KEYS[kb + 1])
    if left > 0 then start = now + left end
  end
  local k, id = tonumber(ARGV[ab + 2]), ARGV[ab + 3]
  local function slot()
    if k == 0 then return true end
    redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
    if not redis.call('ZSCORE', holders, id) and redis.call('ZCARD', holders) >= k then
      redis.call('ZADD', waiters, 'NX', now, id)
      return false
    end
    redis.call('ZADD', holders, now + lease, id)
    redis.call('ZREM', waiters, id)
    return true
  end
  if ARGV[ab] == '1' and start == now then
    if slot() then return 0 end
    return -1
  end
  for j = 1, nb do
    local ready = tat_of(KEYS[kb + 3 + j]) - tonumber(ARGV[ab + 4 + 2 * j])
    if ready > start then start = ready end
  end
  if start == now and not slot() then return -1 end
  for j = 1, nb do
    local key = KEYS[kb + 3 + j]
    tats[key] = math.max(tats[key], start) + tonumber(ARGV[ab + 3 + 2 * j])
    dirty[key] = true
  end
  return math.ceil(start - now)
end

local out = {}
local kb, ab = 0, 2
while ab <= #ARGV do
  local nb = tonumber(ARGV[ab + 4])
  table.insert(out, gate(kb, ab, nb))
  kb = kb + 3 + nb
  ab = ab + 5 + 2 * nb
end
for key in pairs(dirty) do
  redis.call('SET', key, string.format('%.3f', tats[key]), 'PX', math.ceil(tats[key] - now) + 1000)
end
return out
",
    )
});

/// Gives back a job's slot of its key and wakes the oldest waiter that is in the delayed set
/// (due now). KEYS: the key's holders, its waiters, the delayed set. ARGV: job id. Returns
/// 1 when a waiter was woken.
pub(crate) static RELEASE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
local now = now_ms()
for _ = 1, 10 do
  local next = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #next == 0 then return 0 end
  redis.call('ZREM', KEYS[2], next[1])
  if redis.call('ZADD', KEYS[3], 'XX', 'CH', now, next[1]) == 1 then return 1 end
end
return 0
",
    )
});

/// Gives back a job's slot of its key and takes the key's oldest waiter off the waiters, for
/// a queue whose waiters wait in other partitions' delayed sets. KEYS: the key's holders, its
/// waiters. ARGV: job id. Returns the waiter's id, or nil.
pub(crate) static RELEASE_SLOT_TAKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
redis.call('ZREM', KEYS[1], ARGV[1])
local next = redis.call('ZRANGE', KEYS[2], 0, 0)
if #next == 0 then return false end
redis.call('ZREM', KEYS[2], next[1])
return next[1]
",
    )
});

/// Extends the leases of slots held by running jobs. KEYS: the keys' holders, one per job.
/// ARGV: lease ms, then per job its id. A slot that expired meanwhile is not taken again.
pub(crate) static RENEW_SLOTS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local until = now_ms() + tonumber(ARGV[1])
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', until, ARGV[i + 1]) end
return #KEYS
",
    )
});

/// Pauses a rate key. KEYS: its pause key. ARGV: ms. Never shortens a longer pause.
pub(crate) static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
",
    )
});

/// Claim entries whose lease expired, never this consumer's own (a run of this process may
/// still hold it: claiming it would start a second run in the same process). KEYS: stream.
/// ARGV: group, consumer, min idle ms, cursor (an entry id; `0-0` from the start), count.
/// Returns `{next cursor, {{id, fields, delivery count}...}}`, the cursor `0-0` at the end.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local group, consumer, idle, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local start = '-'
if ARGV[4] ~= '0-0' then start = '(' .. ARGV[4] end
local page = count * 4
local scan = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, start, '+', page)
local ids, last = {}, nil
for _, e in ipairs(scan) do
  last = e[1]
  if e[2] ~= consumer then table.insert(ids, e[1]) end
  if #ids >= count then break end
end
local next = '0-0'
if last and (#ids >= count or #scan >= page) then next = last end
local out = {}
if #ids > 0 then
  for _, e in ipairs(redis.call('XCLAIM', KEYS[1], group, consumer, idle, unpack(ids))) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local p = redis.call('XPENDING', KEYS[1], group, e[1], e[1], 1)
      if #p > 0 and p[1][2] == consumer then table.insert(out, {e[1], e[2], p[1][4]}) end
    end
  end
end
return {next, out}
",
    )
});

/// Take back this consumer's own pending entries that no run of this process holds (a read
/// or claim whose reply was lost still executed on the server). KEYS: stream. ARGV: group,
/// consumer, then entry ids. Each is claimed again by the same consumer, which raises its
/// delivery count, so a forgotten run could not write. Returns `{{id, fields, count}...}`.
pub(crate) static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {}
local ids = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then table.insert(ids, ARGV[i]) end
end
if #ids == 0 then return out end
for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    table.insert(out, {e[1], e[2], p[1][4]})
  end
end
return out
",
    )
});

/// A schedule tick. KEYS: the job's lane's stream, state sets, the tick's dedupe key, the
/// schedule's last-tick key, the job's record, the schedule's paused key, the job's unique key
/// (or the record again). ARGV: dedupe ttl ms, tick ms, job id, n, unique ttl ms (0: not
/// unique), n record items, then the entry's fields. Returns the new entry id, nil if another
/// scheduler already enqueued this tick, 0 while the schedule is paused (its tick is not
/// marked), or `{'held', holder id}` when the unique key is held (the tick is marked).
pub(crate) static TICK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
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
transit(KEYS[8], ARGV[3], 'queued', now_ms(), 0, fields)
return entry
",
    )
});

/// Resume a schedule. KEYS: its paused key, its resumed key. ARGV: now ms. Returns 1 if it
/// was paused, 0 if not; the resume time is kept so a catch-up never covers the pause.
pub(crate) static RESUME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// Forget a schedule. KEYS: the index of schedules, its paused, resumed and last-tick keys.
/// ARGV: its name. Returns 1 if it was registered, else 0.
pub(crate) static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return redis.call('HDEL', KEYS[1], ARGV[1])
",
    )
});

/// Re-drive a parked entry into its lane's stream. KEYS: the normal lane's stream, state sets,
/// parked stream, the job's record (or the parked stream again when the entry has no id), the
/// high and the low lanes' streams. ARGV: parked id, raw field prefix, job id
/// (may be empty). Copies the original fields back with the attempt reset to 1. Returns the
/// new id or nil.
pub(crate) static REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local r = redis.call('XRANGE', KEYS[6], ARGV[1], ARGV[1])
if #r == 0 then return false end
local f = r[1][2]
local out = {}
local plen = string.len(ARGV[2])
for i = 1, #f, 2 do
  if string.sub(f[i], 1, plen) == ARGV[2] then
    local name = string.sub(f[i], plen + 1)
    local value = f[i + 1]
    if name == 'attempt' then value = '1' end
    table.insert(out, name)
    table.insert(out, value)
  end
end
if #out == 0 then return false end
local entry = redis.call('XADD', lane_stream(field(out, 'lane'), 8, 9), '*', unpack(out))
redis.call('XDEL', KEYS[6], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[7], 'cancel', 'finished', 'result')
  redis.call('PERSIST', KEYS[7])
  transit(KEYS[7], ARGV[3], 'queued', now_ms(), 0, {'entry', entry, 'attempt', '1'})
end
return entry
",
    )
});

/// Re-queue entries that sit below the group's last delivered id but are pending for no
/// consumer (an operator's `XGROUP DELCONSUMER`, a group created at the wrong id): they would
/// never be delivered again. KEYS: stream. ARGV: group, cursor (exclusive), count. Returns
/// `{next cursor or '', re-queued count}`.
pub(crate) static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, id
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then id = g[i + 1] end
  end
  if name == ARGV[1] then last = id end
end
if not last then return {'', 0} end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], last, 'COUNT', tonumber(ARGV[3]))
local moved = 0
for _, e in ipairs(entries) do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1) == 0 then
    redis.call('XADD', KEYS[1], '*', unpack(e[2]))
    redis.call('XDEL', KEYS[1], e[1])
    moved = moved + 1
  end
end
if #entries < tonumber(ARGV[3]) then return {'', moved} end
return {entries[#entries][1], moved}
",
    )
});

/// Make sure the group exists. KEYS: stream, the group's marker key. ARGV: group. Creates it
/// at the stream's beginning the first time (entries pushed before any worker are delivered)
/// and returns 1; returns 0 when it exists, and 2 when it existed once and is gone (an
/// operator destroyed it, or the stream was deleted): see [`RECREATE`].
pub(crate) static ENSURE_GROUP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    for i = 1, #g, 2 do
      if g[i] == 'name' and g[i + 1] == ARGV[1] then
        redis.call('SET', KEYS[2], '1')
        return 0
      end
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
redis.call('SET', KEYS[2], '1')
return 1
",
    )
});

/// Recreate a group that was destroyed, at the stream's end, and move every entry the stream
/// still holds (never delivered, or in flight when the group went) to the delayed set, due in
/// `delay` ms (a lease: a run still in flight learns it lost its entry before the copy runs).
/// New entry ids mean old and new runs of a job never share an id and a fencing token. KEYS:
/// stream, state sets, delayed set, then per entry its job's delayed hash and record (the
/// stream twice for an entry without a job id, which goes back to the stream's end). ARGV:
/// group, delay ms, then per entry: entry id, job id or ''. Returns how many moved, or -1 when
/// another worker recreated the group first.
pub(crate) static RECREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM')
if type(created) == 'table' and created.err then return -1 end
local now = now_ms()
local due = now + tonumber(ARGV[2])
local moved = 0
local k = 0
for i = 3, #ARGV, 2 do
  k = k + 1
  local entry, id = ARGV[i], ARGV[i + 1]
  local hkey, rec = KEYS[6 + 2 * k - 1], KEYS[6 + 2 * k]
  local r = redis.call('XRANGE', KEYS[1], entry, entry)
  if #r > 0 then
    if id == '' then
      redis.call('XADD', KEYS[1], '*', unpack(r[1][2]))
    else
      redis.call('DEL', hkey)
      redis.call('HSET', hkey, unpack(r[1][2]))
      redis.call('ZADD', KEYS[6], due, id)
      if redis.call('EXISTS', rec) == 1 then transit(rec, id, 'delayed', now, 0, {'due', due}) end
    end
    redis.call('XDEL', KEYS[1], entry)
    moved = moved + 1
  end
end
return moved
",
    )
});

/// Forget ended jobs whose records expired. KEYS: the done, parked and cancelled sets. ARGV:
/// the record ttl ms. Returns how many ids were removed.
pub(crate) static TRIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local before = now_ms() - tonumber(ARGV[1])
local removed = 0
for i = 1, #KEYS do removed = removed + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', before) end
return removed
",
    )
});

/// Remove a consumer that has no pending entries. KEYS: stream. ARGV: group, consumer.
pub(crate) static DEL_CONSUMER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// Remove the group's consumers that hold no entry and have not read for `min idle` ms
/// (crashed or restarted workers), except `self`. KEYS: stream. ARGV: group, min idle ms,
/// self. Returns how many were removed.
pub(crate) static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then idle = c[i + 1] end
  end
  if name ~= ARGV[3] and pending == 0 and idle >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
",
    )
});
