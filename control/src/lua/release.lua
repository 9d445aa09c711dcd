-- release: end a lease; idempotent by lease id (I3). Reports the request's outcome for the
-- weighted strategy and health.
-- ARGV: 1 lease id  2 latency ms (-1 = unknown)  3 error (0|1)  4 retire the slot (0|1)
--       5 affinity (0 none, 1 user back on its last slot, 2 back on another slot, 3 new user;
--         absent from older nodes = 0)
-- Reply: {released(0|1), closed slot records...} (slots that left the pool: close them upstream)
local c = load_cfg()
if not c then return {0} end
local closed = {}
local ok = release_lease(c, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), closed)
local affinity, latency = tonumber(ARGV[5] or '0') or 0, tonumber(ARGV[2])
if ok and affinity >= 1 and affinity <= 3 then
  bump(({'kh', 'km', 'kn'})[affinity])
  if latency >= 0 and affinity < 3 then bump(affinity == 1 and 'khm' or 'kmm', latency) end
end
local reply = {ok and 1 or 0}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
