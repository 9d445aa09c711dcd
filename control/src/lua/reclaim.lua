-- reclaim: end expired leases, idle bindings and reservations whose creator died (I4), and hand
-- out the outbox of slots removed earlier where no caller could be told.
-- ARGV: 1 limit per kind.  Reply: {leases, bindings, reservations, closed slot records...}
local c = load_cfg()
if not c then return {0, 0, 0} end
local closed = {}
local n_l, n_b, n_r = reclaim(c, now_ms(), tonumber(ARGV[1]), closed)
local reply = {n_l, n_b, n_r}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
local pending = redis.call('LPOP', K_CLOSING, tonumber(ARGV[1]))
if pending then
  for _, r in ipairs(pending) do reply[#reply + 1] = r end
end
return reply
