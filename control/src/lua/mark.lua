-- mark: set a slot's state (ready | draining | unhealthy | retired). A slot that nothing holds
-- any more leaves the pool at once.
-- ARGV: 1 slot id  2 state.  Reply: {found(0|1), closed slot records...}
local c = load_cfg()
if not c then return {0} end
local s = get_slot(ARGV[1])
if not s then return {0} end
s.st = ARGV[2]
local closed = {}
settle(c, s, closed)
redis.call('PUBLISH', CHANNEL, 'm')
local reply = {1}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
