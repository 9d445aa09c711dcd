-- unbind: end a binding (client DELETE). In session isolation its slot is retired, never reused (I8).
-- ARGV: 1 binding key.  Reply: {unbound(0|1), closed slot records...}
local c = load_cfg()
if not c then return {0} end
local closed = {}
local ok = unbind_key(c, ARGV[1], closed)
local reply = {ok and 1 or 0}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
