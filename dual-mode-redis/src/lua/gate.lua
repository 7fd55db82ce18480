-- Jobs at their gates as they are about to start: their rate limits and their keys'
-- concurrency, job after job as if one by one. KEYS, per job: the pause key of its rate key,
-- its key's holders (a sorted set of job ids by lease expiry) and waiters (job ids by when
-- they began to wait), then its buckets; keys a job has no use for are given as any key of
-- the queue. ARGV: the holders' lease ms, then per job: reserved (`1`: its start was reserved
-- already), has pause key, its key's concurrency (0: none), job id, bucket count, then per
-- bucket its interval and tolerance in ms.
--
-- GCRA: a bucket has room at `t` when `t >= tat - tolerance`, and a start at `t` moves its
-- `tat` to `max(tat, t) + interval`. The start is the first moment every bucket has room and
-- the pause is over; it is reserved in every bucket at once. A reserved start goes ahead
-- without drawing again unless the key is paused. A job that may start now also needs one of
-- its key's slots: holders whose lease expired are dropped first (a crashed worker holds
-- none for long), and without a free slot the job becomes a waiter and nothing is drawn.
-- Returns per job the wait in ms (0: start now, holding a slot when the key has a
-- concurrency), or -1 to wait for a slot.

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
