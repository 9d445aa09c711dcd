-- warm (leader only, fenced): a reservation to create one more idle slot, while the pool has
-- fewer than `min` idle ready slots (counting warm-up creations in flight) and room below max (I1).
-- ARGV: 1 fencing token  2 min  3 reservation id  4 holder
-- Reply: {'R', reservation_id, endpoint} create one; {'N'} enough (or every endpoint's breaker is open); {'F', newest} refused (newer leader)
local ok, seen = check_fence(tonumber(ARGV[1]))
if not ok then return {'F', seen} end
local c = load_cfg()
if not c then return {'N'} end
local now = now_ms()
local idle = redis.call('ZCARD', K_AVAIL) + tonumber(redis.call('HGET', K_ST, 'wres') or '0')
if idle >= tonumber(ARGV[2]) then return {'N'} end
local total = redis.call('ZCARD', K_ALL) + redis.call('ZCARD', K_RESV)
if total >= c.max then return {'N'} end
local best = pick_endpoint(c, now)
if not best then return {'N'} end
bump('ep:' .. best)
bump('wres')
redis.call('ZADD', K_RESV, now + c.resv_ttl, ARGV[3])
redis.call('HSET', K_RDATA, ARGV[3], cmsgpack.pack({ep = best, holder = ARGV[4], key = '', lease = 0}))
return {'R', ARGV[3], best}
