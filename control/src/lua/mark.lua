-- mark: set a slot's state (ready | draining | unhealthy | retired). A slot that nothing holds
-- any more leaves the pool at once.
-- ARGV: 1 slot id  2 state  3 fencing token (optional: a leader's write, refused for an older
--       token, I6)  4 'idle' (optional: act only while the slot is still ready with no lease and
--       no binding, as the leader saw it — a slot bound in between is not killed)
-- Reply: {found(0|1), closed slot records...}; {-1, newest token} when the token is refused.
if ARGV[3] then
  local ok, seen = check_fence(tonumber(ARGV[3]))
  if not ok then return {-1, seen} end
end
local c = load_cfg()
if not c then return {0} end
local s = get_slot(ARGV[1])
if not s then return {0} end
if ARGV[4] == 'idle' and (s.st ~= 'ready' or s.l > 0 or s.b > 0) then return {0} end
s.st = ARGV[2]
local closed = {}
settle(c, s, closed)
redis.call('PUBLISH', CHANNEL, 'm')
local reply = {1}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
