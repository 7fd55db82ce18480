-- Re-queue entries that sit below the group's last delivered id but are pending for no
-- consumer (an operator's `XGROUP DELCONSUMER`, a group created at the wrong id): they would
-- never be delivered again. KEYS: stream. ARGV: group, cursor (exclusive), count. Returns
-- `{next cursor or '', re-queued count}`.

local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if field(g, 'name') == ARGV[1] then last = field(g, 'last-delivered-id') end
end
if not last then return {'', 0} end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], last, 'COUNT', tonumber(ARGV[3]))
local moved = 0
for _, e in ipairs(entries) do
  if not pending(KEYS[1], ARGV[1], e[1]) then
    redis.call('XADD', KEYS[1], '*', unpack(e[2]))
    redis.call('XDEL', KEYS[1], e[1])
    moved = moved + 1
  end
end
if #entries < tonumber(ARGV[3]) then return {'', moved} end
return {entries[#entries][1], moved}
