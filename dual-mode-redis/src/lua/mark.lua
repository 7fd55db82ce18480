-- Marks runs as running, once they have run for a moment (a job shorter than that goes from
-- queued to done directly). KEYS: stream, state sets, then per run its record. ARGV: group,
-- consumer, then per run: entry id, token, job id, attempt, start ms. Per run
-- returns 1 (marked), 0 (not owned: the run lost its lease) or 2 (a cancellation was
-- requested: not marked, the run is told).

local group, consumer = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
local k = 0
for i = 3, #ARGV, 5 do
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
      transit(rec, id, 'running', now, nil,
        {'started', started, 'worker', consumer, 'attempt', attempt, 'entry', entry})
      table.insert(out, 1)
    end
  end
end
return out
