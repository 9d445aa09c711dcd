-- fence: record a new leader's fencing token on this pool so older leaders' writes are refused (I6).
-- ARGV: 1 token.  Reply: {accepted(0|1), newest token seen}
local ok, seen = check_fence(tonumber(ARGV[1]))
if ok then return {1, math.max(seen, tonumber(ARGV[1]))} end
return {0, seen}
