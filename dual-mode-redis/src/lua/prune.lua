-- Remove the group's consumers that hold no entry and have not read for `min idle` ms
-- (crashed or restarted workers), except `self`. KEYS: stream. ARGV: group, min idle ms,
-- self. Returns how many were removed.

local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name = field(c, 'name')
  if name ~= ARGV[3] and field(c, 'pending') == 0 and field(c, 'idle') >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
