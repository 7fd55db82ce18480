-- Recreate a group that was destroyed, at the stream's end, and move every entry the stream
-- still holds (never delivered, or in flight when the group went) to the delayed set, due in
-- `delay` ms (a lease: a run still in flight learns it lost its entry before the copy runs).
-- New entry ids mean old and new runs of a job never share an id and a fencing token. KEYS:
-- stream, state sets, delayed set, then per entry its job's delayed hash and record (the
-- stream twice for an entry without a job id, which goes back to the stream's end). ARGV:
-- group, delay ms, then per entry: entry id, job id or ''. Returns how many moved, or -1 when
-- another worker recreated the group first.

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
      delay(KEYS[6], hkey, id, due, unpack(r[1][2]))
      if redis.call('EXISTS', rec) == 1 then transit(rec, id, 'delayed', now, nil, {'due', due}) end
    end
    redis.call('XDEL', KEYS[1], entry)
    moved = moved + 1
  end
end
return moved
