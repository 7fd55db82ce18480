-- A cancellation by id. KEYS: the normal lane's stream, state sets, delayed set, the job's
-- delayed hash, record, unique key (or the record again), the high and the low lanes'
-- streams. ARGV: group, what is kept of cancelled jobs (`<age ms>:<count>`), channel, job id,
-- has unique.
-- Returns `removed` (it will never run), `requested` (it runs or was just delivered: it is
-- told), `unknown`, or the state of an ended job.

local group, keep, channel, id, has_unique = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
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
finish(rec, KEYS[9], id, has_unique, 'cancelled', now, keep, channel, {'finished', now, 'cancel', '1'})
return 'removed'
