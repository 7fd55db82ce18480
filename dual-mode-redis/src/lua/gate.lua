-- Jobs at their gates as they are about to start: their rate limits and their keys'
-- concurrency, job after job as if one by one. KEYS, per job: the pause key of its rate key,
-- its key's holders (a sorted set of job ids by lease expiry) and waiters (job ids by when
-- they began to wait), then per bucket the bucket and its window of actual starts (a sorted
-- set of `<ms>:<job id>` by start time); keys a job has no use for are given as any key of the
-- queue. ARGV: the holders' lease ms, then per job: reserved (`1`: its start was reserved
-- already), has pause key, its key's concurrency (0: none), job id, bucket count, then per
-- bucket its interval and tolerance, its window in ms and the most starts in a window.
--
-- GCRA: a bucket has room at `t` when `t >= tat - tolerance`, and a start at `t` moves its
-- `tat` to `max(tat, t) + interval`. The start is the first moment every bucket has room and
-- the pause is over; it is reserved in every bucket at once. A reserved start draws no second
-- time unless the key is paused. Every start, reserved or not, also needs room in each
-- bucket's window of actual starts: reserved starts that fell due while no worker slot was
-- free wait there rather than go all at once, keeping their reservation. A job that may start
-- now also needs one of its key's slots: holders whose lease expired are dropped first (a
-- crashed worker holds none for long), and without a free slot the job becomes a waiter and
-- nothing is drawn. Returns per job the wait in ms (0: start now, holding a slot when the key
-- has a concurrency), or -1 to wait for a slot.

local now = now_ms()
local lease = tonumber(ARGV[1])
-- Buckets and pauses are read once per batch and buckets written once at its end: the jobs
-- of one key in a batch cost one GET, one PTTL and one SET together. Windows are trimmed once
-- per batch.
local tats, dirty, pauses, trimmed = {}, {}, {}, {}
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
  -- Bucket j's key, window key and arguments (1: interval, 2: tolerance, 3: window, 4: most).
  local function bucket(j) return KEYS[kb + 2 + 2 * j] end
  local function window(j) return KEYS[kb + 3 + 2 * j] end
  local function arg(j, i) return tonumber(ARGV[ab + i + 4 * j]) end
  -- When every window has room for one more start: now, or when the oldest start of a full
  -- window leaves it.
  local function room()
    local at = now
    for j = 1, nb do
      local w, span = window(j), arg(j, 3)
      if not trimmed[w] then
        redis.call('ZREMRANGEBYSCORE', w, '-inf', now - span)
        trimmed[w] = true
      end
      if redis.call('ZCARD', w) >= arg(j, 4) then
        local oldest = redis.call('ZRANGE', w, 0, 0, 'WITHSCORES')
        local free = tonumber(oldest[2]) + span
        if free > at then at = free end
      end
    end
    return at
  end
  local function started()
    for j = 1, nb do
      redis.call('ZADD', window(j), now, now .. ':' .. id)
      redis.call('PEXPIRE', window(j), math.ceil(arg(j, 3)) + 1000)
    end
  end
  if ARGV[ab] == '1' and start == now then
    local at = room()
    if at > now then return math.ceil(at - now) end
    if not slot() then return -1 end
    started()
    return 0
  end
  for j = 1, nb do
    local ready = tat_of(bucket(j)) - arg(j, 2)
    if ready > start then start = ready end
  end
  if start == now then
    local at = room()
    if at > now then
      start = at
    elseif not slot() then
      return -1
    end
  end
  for j = 1, nb do
    local key = bucket(j)
    tats[key] = math.max(tats[key], start) + arg(j, 1)
    dirty[key] = true
  end
  if start == now then started() end
  return math.ceil(start - now)
end

local out = {}
local kb, ab = 0, 2
while ab <= #ARGV do
  local nb = tonumber(ARGV[ab + 4])
  table.insert(out, gate(kb, ab, nb))
  kb = kb + 3 + 2 * nb
  ab = ab + 5 + 4 * nb
end
for key in pairs(dirty) do
  redis.call('SET', key, string.format('%.3f', tats[key]), 'PX', math.ceil(tats[key] - now) + 1000)
end
return out
