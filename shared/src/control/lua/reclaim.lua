-- reclaim: end expired leases, idle bindings and reservations whose creator died (I4).
-- ARGV: 1 limit per kind.  Reply: {leases, bindings, reservations, closed slot records...}
local c = load_cfg()
if not c then return {0, 0, 0} end
local closed = {}
local n_l, n_b, n_r = reclaim(c, now_ms(), tonumber(ARGV[1]), closed)
local reply = {n_l, n_b, n_r}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
