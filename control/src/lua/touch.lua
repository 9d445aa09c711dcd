-- touch: keep a binding alive for another idle TTL without taking a lease.
-- ARGV: 1 binding key.  Reply: 1 if bound, 0 otherwise.
local c = load_cfg()
if not c then return 0 end
if not redis.call('HGET', K_BIND, ARGV[1]) then return 0 end
redis.call('ZADD', K_BEXP, 'XX', now_ms() + c.idle_ttl, ARGV[1])
return 1
