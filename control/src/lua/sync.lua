-- sync: store the pool's configuration (from the database). Rebuilds the selection sets when the
-- strategy, isolation or capacity changed.
-- ARGV: alternating field, value for: strategy iso max cap lease_ttl idle_ttl resv_ttl sticky_c ew enabled
-- Reply: the configuration generation after the call.
local old = load_cfg()
local args = {}
for i = 1, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('HSET', K_CFG, unpack(args))
local gen = redis.call('HINCRBY', K_CFG, 'gen', 1)
local c = load_cfg()
if old == nil or old.strategy ~= c.strategy or old.iso ~= c.iso or old.cap ~= c.cap or old.ew ~= c.ew then
  redis.call('DEL', K_AVAIL, K_BLOAD)
  for _, raw in ipairs(redis.call('HVALS', K_SLOTS)) do
    local s = decode_slot(raw)
    s.w = weights(c)[s.ep + 1] or 1
    put_slot(s)
    refresh(c, s)
  end
  redis.call('PUBLISH', CHANNEL, 's')
end
return gen
