-- Claim entries whose lease expired, never this consumer's own (a run of this process may
-- still hold it: claiming it would start a second run in the same process). KEYS: stream.
-- ARGV: group, consumer, min idle ms, cursor (an entry id; `0-0` from the start), count.
-- Returns `{next cursor, {{id, fields, delivery count}...}}`, the cursor `0-0` at the end.

local group, consumer, idle, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local start = '-'
if ARGV[4] ~= '0-0' then start = '(' .. ARGV[4] end
local page = count * 4
local scan = redis.call('XPENDING', KEYS[1], group, 'IDLE', idle, start, '+', page)
local ids, last = {}, nil
for _, e in ipairs(scan) do
  last = e[1]
  if e[2] ~= consumer then table.insert(ids, e[1]) end
  if #ids >= count then break end
end
local next = '0-0'
if last and (#ids >= count or #scan >= page) then next = last end
local out = {}
if #ids > 0 then
  for _, e in ipairs(redis.call('XCLAIM', KEYS[1], group, consumer, idle, unpack(ids))) do
    if type(e) == 'table' and type(e[2]) == 'table' then
      local p = pending(KEYS[1], group, e[1])
      if p and p[2] == consumer then table.insert(out, {e[1], e[2], p[4]}) end
    end
  end
end
return {next, out}
