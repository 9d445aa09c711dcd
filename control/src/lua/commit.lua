-- commit: the reservation's slot was created upstream; add it to the pool.
-- ARGV: 1 reservation id  2 slot id  3 meta (a MessagePack map from the node: upstream session id, ...)
-- Reply: {'L', ...} as acquire when the reservation came from an acquire (the lease id is the
--        reservation id, bound to its key if it had one); {'C', slot_id} for a warm-up slot, or
--        when the key's binding ended or changed meanwhile (the slot joins unbound: acquire again);
--        {'E', 'NORESV'} when the reservation expired or was aborted: close the upstream session.
local resv_id, slot_id, meta = ARGV[1], ARGV[2], ARGV[3]
local c = load_cfg()
if not c then return {'E', 'NOCONFIG'} end
local now = now_ms()
local exp = redis.call('ZSCORE', K_LEASES, resv_id)
if exp then -- re-sent commit
  local ld = redis.call('HGET', K_LDATA, resv_id)
  local s = ld and get_slot(string.match(ld, '^([^|]*)'))
  if s then return lease_reply(resv_id, s, tonumber(exp), 1) end
end
local rd = redis.call('HGET', K_RDATA, resv_id)
if not rd then
  if redis.call('HEXISTS', K_SLOTS, slot_id) == 1 then return {'C', slot_id} end
  return {'E', 'NORESV'}
end
local r = cmsgpack.unpack(rd)
redis.call('ZREM', K_RESV, resv_id)
redis.call('HDEL', K_RDATA, resv_id)
local seq = redis.call('HINCRBY', K_ST, 'seq', 1)
local vt = tonumber(redis.call('HGET', K_ST, 'vtime') or '0')
local s = {v = SLOT_VERSION, id = slot_id, st = 'ready', ep = r.ep, w = weights(c)[r.ep + 1] or 1, l = 0, b = 0,
  seq = seq, c = now, u = now, r = 0, ew = 0, er = 0, pass = vt, used = 0, m = cmsgpack.unpack(meta)}
redis.call('ZADD', K_ALL, now, slot_id)
bump('cre')
-- A session was created at this endpoint: its breaker closes, the pool's creations work again.
redis.call('HDEL', K_ST, 'bf:' .. r.ep, 'bo:' .. r.ep, 'bp:' .. r.ep, 'cfr')
if r.lease ~= 1 then
  bump('wres', -1)
  put_slot(s)
  refresh(c, s)
  redis.call('PUBLISH', CHANNEL, 'c')
  return {'C', slot_id}
end
if r.key ~= '' then
  local cur = redis.call('HGET', K_BIND, r.key)
  if cur ~= PENDING .. resv_id then
    -- The key was bound meanwhile, or its session ended: the slot joins the pool unbound.
    put_slot(s)
    refresh(c, s)
    redis.call('PUBLISH', CHANNEL, 'c')
    return {'C', slot_id}
  end
  bind_put(r.key, slot_id)
  redis.call('ZADD', K_BEXP, now + first_ttl(c, r.key), r.key)
  s.b = 1
  if c.iso == 'session' then s.used = 1 end
end
local expires = grant(c, s, resv_id, r.holder, now, r.user)
return lease_reply(resv_id, s, expires, 1)
