-- Jobs at their gates as they are about to start (see `gating.lua`). KEYS, per job: the
-- pause key of its rate key, its key's holders (a sorted set of job ids by lease expiry) and
-- waiters (job ids by when they began to wait), then per bucket the bucket and its window of
-- actual starts; keys a job has no use for are given as any key of the queue. ARGV: the
-- holders' lease ms, then per job: reserved (`1`: its start was reserved already), has pause
-- key, its key's concurrency (0: none), job id, bucket count, then per bucket its interval
-- and tolerance, its window in ms and the most starts in a window. Returns per job the wait in
-- ms (0: start now, holding a slot when the key has a concurrency), or -1 to wait for a slot.

local g = gate_batch(tonumber(ARGV[1]))
local out = {}
local kb, ab = 0, 2
while ab <= #ARGV do
  local nb = tonumber(ARGV[ab + 4])
  local j = {
    pause = ARGV[ab + 1] == '1' and KEYS[kb + 1] or nil,
    slots = tonumber(ARGV[ab + 2]),
    holders = KEYS[kb + 2],
    waiters = KEYS[kb + 3],
    buckets = {},
  }
  for b = 1, nb do
    local a = ab + 1 + 4 * b
    table.insert(j.buckets, {
      key = KEYS[kb + 2 + 2 * b], window = KEYS[kb + 3 + 2 * b],
      interval = tonumber(ARGV[a]), tolerance = tonumber(ARGV[a + 1]),
      span = tonumber(ARGV[a + 2]), most = tonumber(ARGV[a + 3]),
    })
  end
  table.insert(out, gate_job(g, j, ARGV[ab + 3], ARGV[ab] == '1'))
  kb = kb + 3 + 2 * nb
  ab = ab + 5 + 4 * nb
end
gate_flush(g)
return out
