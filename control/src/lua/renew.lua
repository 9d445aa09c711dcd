-- renew: extend a lease by the pool's lease TTL from now (long streams).
-- ARGV: 1 lease id.  Reply: {1, expires_ms} or {0} when the lease is unknown (expired, reclaimed).
local c = load_cfg()
if not c then return {0} end
local now = now_ms()
local exp = redis.call('ZSCORE', K_LEASES, ARGV[1])
-- An expired lease stays dead even before a reclaim pass removes it.
if not exp or tonumber(exp) <= now then return {0} end
local expires = now + c.lease_ttl
redis.call('ZADD', K_LEASES, 'XX', expires, ARGV[1])
return {1, expires}
