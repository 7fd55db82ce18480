-- Make sure the group exists. KEYS: stream, the group's marker key. ARGV: group. Creates it
-- at the stream's beginning the first time (entries pushed before any worker are delivered)
-- and returns 1; returns 0 when it exists, and 2 when it existed once and is gone (an
-- operator destroyed it, or the stream was deleted): see recreate.lua.

local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    if field(g, 'name') == ARGV[1] then
      redis.call('SET', KEYS[2], '1')
      return 0
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
redis.call('SET', KEYS[2], '1')
return 1
