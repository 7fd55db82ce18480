-- The gate a job passes as it is about to start: its rate limits and its key's concurrency,
-- job after job as if one by one. Loaded after the prelude by the gate and read scripts.
--
-- GCRA: a bucket has room at `t` when `t >= tat - tolerance`, and a start at `t` moves its
-- `tat` to `max(tat, t) + interval`. The start is the first moment every bucket has room and
-- the key's pause is over; it is reserved in every bucket at once. A reserved start draws no
-- second time unless the key is paused. Every start, reserved or not, also needs room in each
-- bucket's window of actual starts (at most `most` in the last `span` ms): reserved starts
-- that fell due while no worker slot was free wait there rather than go all at once, keeping
-- their reservation. A job that may start now also needs one of its key's slots: holders
-- whose lease expired are dropped first (a crashed worker holds none for long), and without a
-- free slot the job becomes a waiter and nothing is drawn.
--
-- A window is a list of a batch's starts per element, oldest first: `<ms>:<n>:<total>`, `n`
-- starts at `ms`, `total` the starts of the list up to and with this element. The starts in
-- the window are the newest total less the oldest's total before it: a batch reads two
-- elements and appends one, whatever its number of starts.

-- A batch's state: buckets, pauses and windows are read once per batch and written once at
-- its end (`gate_flush`), so the jobs of one key in a batch cost one GET, one PTTL and one
-- SET together, and a window a few list commands.
local function gate_batch(lease)
  return {now = now_ms(), lease = lease, tats = {}, dirty = {}, pauses = {}, windows = {}}
end

-- An element of a window: its ms, starts and running total (nil for one that does not parse).
local function window_element(e)
  local ms, n, total = string.match(e or '', '^(%d+):(%d+):(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(n), tonumber(total)
end

-- Window `w` of `span` ms as the batch found it: its elements older than the span dropped, the
-- starts left in it and its running total, and the starts the batch added (`added`).
local function window_of(g, w, span)
  local s = g.windows[w]
  if s then return s end
  s = {span = span, count = 0, total = 0, added = 0}
  local head
  while true do
    head = redis.call('LINDEX', w, 0)
    if not head then break end
    local ms = window_element(head)
    if ms and ms > g.now - span then break end
    redis.call('LPOP', w)
  end
  if head then
    local _, head_n, head_total = window_element(head)
    local _, _, total = window_element(redis.call('LINDEX', w, -1))
    if not total or total < head_total then
      -- Not a window this script wrote: start a new one.
      redis.call('DEL', w)
    else
      s.count, s.total = total - head_total + head_n, total
    end
  end
  -- Known only once read: a window that could not be read is never written.
  g.windows[w] = s
  return s
end

-- Whether job `id` may hold a slot of its key (always, when the key has no concurrency):
-- holders whose lease expired are dropped first; without a free slot it becomes a waiter.
local function gate_slot(g, j, id)
  if j.slots == 0 then return true end
  local now = g.now
  redis.call('ZREMRANGEBYSCORE', j.holders, '-inf', now)
  if not redis.call('ZSCORE', j.holders, id) and redis.call('ZCARD', j.holders) >= j.slots then
    redis.call('ZADD', j.waiters, 'NX', now, id)
    return false
  end
  redis.call('ZADD', j.holders, now + g.lease, id)
  redis.call('ZREM', j.waiters, id)
  return true
end

-- When every window of `j`'s buckets has room for one more start: now, or when enough of the
-- oldest starts of a full window leave it.
local function gate_room(g, j)
  local now = g.now
  local at = now
  for i = 1, #j.buckets do
    local b = j.buckets[i]
    local s = window_of(g, b.window, b.span)
    local over = s.count + s.added - b.most + 1
    if over > 0 then
      -- The oldest elements' starts leave first; the batch's own, at `now`, last.
      local free = now + b.span
      local from = 0
      while over > 0 do
        local page = redis.call('LRANGE', b.window, from, from + 31)
        if #page == 0 then break end
        for _, e in ipairs(page) do
          local ms, n = window_element(e)
          over = over - (n or 0)
          if over <= 0 then
            free = (ms or now) + b.span
            break
          end
        end
        from = from + #page
      end
      if free > at then at = free end
    end
  end
  return at
end

-- Counts a start now in every window of `j`'s buckets.
local function gate_started(g, j)
  for i = 1, #j.buckets do
    local b = j.buckets[i]
    local s = window_of(g, b.window, b.span)
    s.added = s.added + 1
  end
end

-- Job `id` at its gate, `reserved` when its start was reserved already. `j` holds what its
-- gate is (shared by the jobs of one type and rate key): `j.pause` (its rate key's pause key,
-- or nil), `j.slots` (its key's concurrency, 0 for none) with `j.holders` and `j.waiters`
-- (the key's slot sets), and `j.buckets`, each `{key, window, interval, tolerance, span,
-- most}`. Returns the wait in ms (0: start now, holding a slot when the key has a
-- concurrency), or -1 to wait for a slot.
local function gate_job(g, j, id, reserved)
  local now = g.now
  local start = now
  if j.pause then
    local left = g.pauses[j.pause]
    if left == nil then
      left = redis.call('PTTL', j.pause)
      g.pauses[j.pause] = left
    end
    if left > 0 then start = now + left end
  end
  if reserved and start == now then
    local at = gate_room(g, j)
    if at > now then return math.ceil(at - now) end
    if not gate_slot(g, j, id) then return -1 end
    gate_started(g, j)
    return 0
  end
  local tats = g.tats
  for i = 1, #j.buckets do
    local b = j.buckets[i]
    local tat = tats[b.key]
    if tat == nil then
      tat = tonumber(redis.call('GET', b.key) or '0') or 0
      tats[b.key] = tat
    end
    local ready = tat - b.tolerance
    if ready > start then start = ready end
  end
  if start == now then
    local at = gate_room(g, j)
    if at > now then
      start = at
    elseif not gate_slot(g, j, id) then
      return -1
    end
  end
  for i = 1, #j.buckets do
    local b = j.buckets[i]
    tats[b.key] = math.max(tats[b.key], start) + b.interval
    g.dirty[b.key] = true
  end
  if start == now then gate_started(g, j) end
  return math.ceil(start - now)
end

-- Writes the buckets a batch moved, each kept a second past its `tat`, and the starts it
-- added to each window, kept a second past its span.
local function gate_flush(g)
  for key in pairs(g.dirty) do
    local tat = g.tats[key]
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - g.now) + 1000)
  end
  for w, s in pairs(g.windows) do
    if s.added > 0 then
      redis.call('RPUSH', w, g.now .. ':' .. s.added .. ':' .. (s.total + s.added))
      redis.call('PEXPIRE', w, math.ceil(s.span) + 1000)
    end
  end
end
