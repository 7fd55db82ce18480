-- Reads new entries for a consumer from a queue's lanes, in the order given, unless the queue
-- is paused. KEYS: the three lanes' streams in reading order, the queue's pause key. ARGV:
-- group, consumer, at most this many entries in all. Returns `{1}` when paused; else `{0,
-- packed}`, where `packed` is msgpack (`cmsgpack`, which every Redis since 2.6 has) of
-- `{entries of the first lane, of the second, of the third, last ids}`: each lane's entries
-- `XRANGE`-shaped, and the last ids (the newest entry id of each lane, `0-0` for an empty
-- one, in `KEYS` order) given when fewer entries than asked were found: a blocking `XREAD`
-- from them wakes at the next push to any lane. Packed, the entries cross to the client as
-- one string instead of a reply value per field.

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
