-- Reads new entries for a consumer from a queue's lanes, in the order given, unless the queue
-- is paused, and passes them through their gates (see `gating.lua`) when given the queue's
-- rules. KEYS: the three lanes' streams in reading order, the queue's pause key. ARGV: group,
-- consumer, at most this many entries in all; then, to gate what is read: the slots' lease
-- ms, the key prefixes of buckets, windows, rate-key pauses, slot holders and slot waiters,
-- the number of rules, and per rule its kind (`queue`, `type`, `key`: a rate limit of the
-- queue, of a type, of the rate keys with a prefix; `slots`: a concurrency of the rate keys
-- with a prefix), its type or prefix, and its interval, tolerance, window in ms and most
-- starts in a window (for `slots`: the concurrency, the rest 0). The keys the gates use are
-- built here from the prefixes, so the caller gives rules only where they share the lanes'
-- hash tag.
--
-- Returns `{1}` when paused; else `{0, packed}`, where `packed` is msgpack (`cmsgpack`,
-- which every Redis since 2.6 has) of `{entries of the first lane, of the second, of the
-- third, last ids, gates}`: each lane's entries `XRANGE`-shaped; the last ids (the newest
-- entry id of each lane, `0-0` for an empty one, in `KEYS` order) given when fewer entries
-- than asked were found: a blocking `XREAD` from them wakes at the next push to any lane;
-- per entry read, in order, what its gate answered as the gate script does (as text), or
-- empty for an entry that has no gate, whose gate failed, or when no rules were given.
-- Packed, the entries cross to the client as one string instead of a reply value per field.

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

local gates = {}
if #ARGV > 3 then
  local g = gate_batch(tonumber(ARGV[4]))
  local rate, window, pause, holders, waiters = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  local rules = {}
  for r = 0, tonumber(ARGV[10]) - 1 do
    local a = 11 + 6 * r
    rules[#rules + 1] = {
      kind = ARGV[a], text = ARGV[a + 1], interval = tonumber(ARGV[a + 2]),
      tolerance = tonumber(ARGV[a + 3]), span = tonumber(ARGV[a + 4]), most = tonumber(ARGV[a + 5]),
    }
  end
  local function bucket(name, r)
    return {key = rate .. name, window = window .. name, interval = r.interval, tolerance = r.tolerance,
      span = r.span, most = r.most}
  end
  -- The gate of the jobs of a type and rate key (`rk` nil for none), or false when they have
  -- none: they draw from the queue's buckets, their type's and their rate key's under the
  -- longest matching prefix; they hold a slot under the longest matching prefix of a
  -- concurrency (the last of equally long ones).
  local function gate_of(type_name, rk)
    local j = {slots = 0, buckets = {}}
    local key_rule, key_len, slot_len = nil, -1, -1
    for _, r in ipairs(rules) do
      if r.kind == 'queue' then
        j.buckets[#j.buckets + 1] = bucket('queue', r)
      elseif r.kind == 'type' then
        if r.text == type_name then j.buckets[#j.buckets + 1] = bucket('type:' .. r.text, r) end
      elseif rk and string.sub(rk, 1, #r.text) == r.text then
        if r.kind == 'key' and #r.text > key_len then
          key_rule, key_len = r, #r.text
        elseif r.kind == 'slots' and #r.text >= slot_len then
          j.slots, slot_len = r.most, #r.text
        end
      end
    end
    if key_rule then j.buckets[#j.buckets + 1] = bucket('key:' .. rk, key_rule) end
    if #j.buckets == 0 and j.slots == 0 then return false end
    if rk then j.pause = pause .. rk end
    if j.slots > 0 then j.holders, j.waiters = holders .. rk, waiters .. rk end
    return j
  end
  -- Gates by type, then by rate key (`''` for none; a rate key is never empty).
  local known = {}
  for i = 2, 4 do
    for _, entry in ipairs(out[i]) do
      local fields = entry[2]
      local id, type_name, rk, rs
      for f = 1, #fields - 1, 2 do
        local name = fields[f]
        if name == 'id' then id = id or fields[f + 1]
        elseif name == 'type' then type_name = type_name or fields[f + 1]
        elseif name == 'rk' then rk = rk or fields[f + 1]
        elseif name == 'rs' then rs = rs or fields[f + 1]
        end
      end
      local answer = ''
      if id and type_name then
        local by_key = known[type_name]
        if not by_key then
          by_key = {}
          known[type_name] = by_key
        end
        local j = by_key[rk or '']
        if j == nil then
          j = gate_of(type_name, rk)
          by_key[rk or ''] = j
        end
        if j then
          -- A gate that fails (a key of another type, written by hand) leaves the job to the
          -- worker's gate call, which says why; the read goes on.
          local ok, wait = pcall(gate_job, g, j, id, rs == '1')
          if ok then answer = wait == 0 and '0' or tostring(wait) end
        end
      end
      gates[#gates + 1] = answer
    end
  end
  gate_flush(g)
end
return {0, cmsgpack.pack({out[2], out[3], out[4], last, gates})}
