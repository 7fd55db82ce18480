//! The Lua scripts; each runs atomically on the Redis server.
//!
//! Every key a script touches is passed in `KEYS`, and all keys of one queue share the hash
//! tag `{queue}`, so the scripts also hold on a Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

/// `owned(stream, group, consumer, id, token)`: whether `consumer` owns the pending entry
/// `id` and its delivery count is still `token` (a claim by anyone, this consumer included,
/// increments the count, so a stale run of the same consumer is fenced too).
const OWNED: &str = r"
local function owned(stream, group, consumer, id, token)
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 0 then return false end
  if p[1][2] ~= consumer then return false end
  if tonumber(p[1][4]) ~= tonumber(token) then return false end
  return true
end
-- The id-token pairs in ARGV[3..] that `consumer` still owns: their ids, and 1 or 0 per pair.
local function owned_pairs(stream, group, consumer)
  local ids, out = {}, {}
  for i = 3, #ARGV, 2 do
    if owned(stream, group, consumer, ARGV[i], ARGV[i + 1]) then
      table.insert(ids, ARGV[i])
      table.insert(out, 1)
    else
      table.insert(out, 0)
    end
  end
  return ids, out
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{OWNED}\n{body}"))
}

/// Lease renewal of a batch of running jobs. KEYS: stream. ARGV: group, consumer, then
/// id-token pairs. Returns, per pair, 1 if renewed or 0 if refused (no longer owned).
///
/// `XCLAIM ... JUSTID` by the owner resets the idle time without incrementing the delivery
/// count, so the fencing tokens stay valid.
pub(crate) static RENEW_BATCH: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local ids, out = owned_pairs(KEYS[1], ARGV[1], ARGV[2])
if #ids > 0 then
  -- unpack expands to all its values only as the last argument
  table.insert(ids, 'JUSTID')
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
end
return out
",
    )
});

/// Success of a batch of runs. KEYS: stream. ARGV: group, consumer, then id-token pairs.
/// Acks and deletes each entry this consumer still owns with that token; returns, per pair,
/// 1 if done or 0 if refused. All checks happen before any write, so the result is the same
/// as acking the pairs one by one.
pub(crate) static ACK_BATCH: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local ids, out = owned_pairs(KEYS[1], ARGV[1], ARGV[2])
if #ids > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return out
",
    )
});

/// Retry later. KEYS: stream, delayed set, the new delayed entry's hash. ARGV: group, consumer,
/// id, token, delay in ms, delayed member, then the new entry's field-value pairs.
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
if not owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('HSET', KEYS[3], unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[5]), ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
",
    )
});

/// Park. KEYS: stream, parked stream. ARGV: group, consumer, id, token, then the parked
/// entry's field-value pairs. Returns 1, or 0 if refused.
pub(crate) static PARK: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
if not owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
",
    )
});

/// Delayed push. KEYS: delayed set, the entry's hash. ARGV: not-before in ms (0: none),
/// delay in ms, member, then field-value pairs. The due time is the server's clock plus the
/// delay, or the given not-before time.
pub(crate) static PUSH_DELAYED: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local at = tonumber(ARGV[1])
if at == 0 then at = now_ms() + tonumber(ARGV[2]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], at, ARGV[3])
return at
",
    )
});

/// Move due delayed entries into the stream. KEYS: delayed set, stream. ARGV: at most this
/// many, the prefix of the entries' hash keys. Returns how many moved.
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, m in ipairs(due) do
  local hkey = ARGV[2] .. m
  local fields = redis.call('HGETALL', hkey)
  if #fields > 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    moved = moved + 1
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', KEYS[1], m)
end
return moved
",
    )
});

/// Claim entries whose lease expired. KEYS: stream. ARGV: group, consumer, min idle ms,
/// cursor, count. Returns `{next cursor, {{id, fields, delivery count}...}}`.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    if #p > 0 and p[1][2] == ARGV[2] then
      table.insert(out, {e[1], e[2], p[1][4]})
    end
  end
end
return {r[1], out}
",
    )
});

/// A schedule tick. KEYS: the tick's dedupe key, the schedule's last-tick key, stream.
/// ARGV: dedupe ttl ms, tick ms, then the entry's field-value pairs. Returns the new entry id,
/// or nil if another scheduler already enqueued this tick.
pub(crate) static TICK: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 3))
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tonumber(ARGV[2]) > last then redis.call('SET', KEYS[2], ARGV[2]) end
return id
",
    )
});

/// Re-drive a parked entry. KEYS: parked stream, stream. ARGV: parked id, raw field prefix.
/// Copies the original fields back with the attempt reset to 1. Returns the new id or nil.
pub(crate) static REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
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
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
",
    )
});

/// Remove a consumer that has no pending entries. KEYS: stream. ARGV: group, consumer.
pub(crate) static DEL_CONSUMER: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});
