-- forget: remove a deleted server's pool once nothing is left in it (the reconcile pass first
-- syncs it to a tombstone, so every slot leaves and every binding ends, and closes what left).
-- ARGV: none.  Reply: 1 when the keys are gone, 0 while slots, leases, reservations or records
-- to close remain.
if redis.call('ZCARD', K_ALL) + redis.call('ZCARD', K_LEASES) + redis.call('ZCARD', K_RESV)
    + redis.call('LLEN', K_CLOSING) > 0 then
  return 0
end
redis.call('DEL', K_CFG, K_SLOTS, K_ALL, K_AVAIL, K_BLOAD, K_RESV, K_RDATA, K_LEASES, K_LDATA, K_BIND, K_BEXP,
  K_ST, K_CLOSING, K_USERS)
return 1
