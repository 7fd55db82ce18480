-- A page of a sorted set from a cursor: `ZRANK` finds the cursor's member in `O(log n)` when
-- it is still there with the same score; otherwise the page starts after (score, member) in
-- the set's order, reading the members of equal score in chunks. KEYS: the set. ARGV: count,
-- the cursor's score and member (an empty member: from the start). Returns
-- `[member, score, ...]`.

local key, count, score, member = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
if member == '' then return redis.call('ZRANGE', key, 0, count - 1, 'WITHSCORES') end
local rank = redis.call('ZRANK', key, member)
if rank and redis.call('ZSCORE', key, member) == score then
  return redis.call('ZRANGE', key, rank + 1, rank + count, 'WITHSCORES')
end
local out, offset, s = {}, 0, tonumber(score)
while #out < 2 * count do
  local rows = redis.call('ZRANGE', key, score, '+inf', 'BYSCORE', 'LIMIT', offset, count, 'WITHSCORES')
  if #rows == 0 then break end
  for i = 1, #rows, 2 do
    local rs = tonumber(rows[i + 1])
    if #out < 2 * count and (rs > s or rows[i] > member) then
      out[#out + 1] = rows[i]
      out[#out + 1] = rows[i + 1]
    end
  end
  offset = offset + count
end
return out
