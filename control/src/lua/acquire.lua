-- acquire: a lease on a slot chosen by the pool's strategy, a reservation to create one, or wait.
-- ARGV: 1 lease_id (caller-chosen UUID; a re-sent call returns the same outcome, I11)
--       2 holder (node id)  3 binding key ('' = none)
--       4 ms the caller has waited so far (recorded in the wait histogram when the answer is not
--         "wait"; absent from older nodes = 0)
--       5 the user (escaped token subject; '' = anonymous: no quota, no rate limit)
--       6 1 on a request's first attempt: the rate limit charges it (re-tries after "wait" are free)
-- Reply: {'L', lease_id, slot_id, slot_record, expires_ms, fresh(0|1)}   lease granted
--        {'R', reservation_id, endpoint_index}                             create a slot, then commit/abort
--        {'W', total, max}                                                 nothing free: wait for a release
--        {'E', 'NOCONFIG'} pool not synced; {'E', 'BINDING_LOST'} the bound session is gone;
--        {'E', 'OPEN'} a slot is needed and every endpoint's circuit breaker is open
--        {'T', retry_ms, rate, burst}   the user's rate limit refuses the request
--        {'Q', 'sessions'|'inflight', limit}   the user is at a quota
local lease_id, holder, key = ARGV[1], ARGV[2], ARGV[3]
local user, first = ARGV[5] or '', ARGV[6] == '1'
local c = load_cfg()
if not c then return {'E', 'NOCONFIG'} end
local now = now_ms()
-- Reclaim expired leases, bindings and reservations (I4): at most once a second per pool on the
-- way in, and always before answering "wait", so capacity held by a dead node is never withheld
-- from an acquirer once its TTL has passed.
local reclaimed = false
local function reclaim_now()
  local closed = {}
  reclaim(c, now, 8, closed)
  push_outbox(closed)
  redis.call('HSET', K_ST, 'nrc', now + 1000)
  reclaimed = true
end
if now >= tonumber(redis.call('HGET', K_ST, 'nrc') or '0') then reclaim_now() end

-- Idempotency: this id already holds a lease or a reservation.
local exp = redis.call('ZSCORE', K_LEASES, lease_id)
if exp then
  local ld = redis.call('HGET', K_LDATA, lease_id)
  local s = ld and get_slot(string.match(ld, '^([^|]*)'))
  if s then return lease_reply(lease_id, s, tonumber(exp), 0) end
end
local rd = redis.call('HGET', K_RDATA, lease_id)
if rd then return {'R', lease_id, cmsgpack.unpack(rd).ep} end

-- Fairness: a user at a quota is refused at once (no waiting), then the rate limit charges the
-- request's first attempt. Both need a user (a token's subject).
local function over_quota()
  if c.qi > 0 and user_count('i', user) >= c.qi then return {'Q', 'inflight', c.qi} end
  if c.qs > 0 and key ~= '' and session_user(key) and redis.call('HEXISTS', K_BIND, key) == 0
      and user_count('s', user) >= c.qs then
    return {'Q', 'sessions', c.qs}
  end
  return nil
end
if user ~= '' then
  local refused = over_quota()
  if refused and not reclaimed then
    -- Expired bindings and leases may still be counted: reclaim, then look again.
    reclaim_now()
    refused = over_quota()
  end
  if refused then return refused end
  if first then
    refused = rate_check(c, user, now)
    if refused then return refused end
  end
end

local function choose()
  local function reserve()
    local total = redis.call('ZCARD', K_ALL) + redis.call('ZCARD', K_RESV)
    if total >= c.max then return {'W', total, c.max} end
    local best = pick_endpoint(c, now)
    if not best then return {'E', 'OPEN'} end
    bump('ep:' .. best)
    redis.call('ZADD', K_RESV, now + c.resv_ttl, lease_id)
    redis.call('HSET', K_RDATA, lease_id, cmsgpack.pack({ep = best, holder = holder, key = key, lease = 1,
      user = user}))
    if key ~= '' and not redis.call('HGET', K_BIND, key) then
      -- Mark the key as pending so a racing acquire for it waits for this slot (one slot per key).
      bind_put(key, PENDING .. lease_id)
      redis.call('ZADD', K_BEXP, now + first_ttl(c, key), key)
    end
    return {'R', lease_id, best}
  end

  local function bind(s)
    bind_put(key, s.id)
    redis.call('ZADD', K_BEXP, now + first_ttl(c, key), key)
    s.b = s.b + 1
  end

  if key ~= '' then
    local sid = redis.call('HGET', K_BIND, key)
    if sid and string.sub(sid, 1, #PENDING) == PENDING then
      -- Another acquire is creating this key's slot: wait for its commit (or its expiry).
      if redis.call('ZSCORE', K_RESV, string.sub(sid, #PENDING + 1)) then return {'W', 0, c.cap} end
      bind_del(key)
      redis.call('ZREM', K_BEXP, key)
      sid = nil
    end
    if sid then
      local s = get_slot(sid)
      if s and (s.st == 'ready' or s.st == 'draining') then
        redis.call('ZADD', K_BEXP, now + c.idle_ttl, key)
        if s.l < c.cap then
          local expires, packed = grant(c, s, lease_id, holder, now, user)
          return lease_reply(lease_id, s, expires, 0, packed)
        end
        return {'W', s.l, c.cap}
      end
      -- The bound slot went away.
      local lost = {}
      unbind_key(c, key, lost)
      push_outbox(lost)
      if c.iso == 'session' or (s and s.used == 1) then return {'E', 'BINDING_LOST'} end
      bump('reb')
    end
  end

  if c.strategy == 'none' then return reserve() end

  if c.iso == 'session' then
    -- A new downstream session gets a fresh, never-bound slot of its own (I8).
    local first = redis.call('ZRANGE', K_AVAIL, 0, 0)[1]
    if not first then return reserve() end
    local s = get_slot(first)
    if key ~= '' then
      s.used = 1
      bind(s)
    end
    local expires, packed = grant(c, s, lease_id, holder, now, user)
    return lease_reply(lease_id, s, expires, 1, packed)
  end

  if c.strategy == 'sticky' and key ~= '' then
    -- Bounded-load affinity: the least-loaded slot; grow the pool when it is busy and we may.
    local pick = redis.call('ZRANGE', K_BLOAD, 0, 0)[1]
    local s = pick and get_slot(pick)
    if s and s.l >= c.cap then
      local total = redis.call('ZCARD', K_ALL) + redis.call('ZCARD', K_RESV)
      if total < c.max then return reserve() end
    end
    if not s then return reserve() end
    bind(s)
    if s.l < c.cap then
      local expires, packed = grant(c, s, lease_id, holder, now, user)
      return lease_reply(lease_id, s, expires, 0, packed)
    end
    put_slot(s)
    refresh(c, s)
    return {'W', s.l, c.cap}
  end

  local pick
  if c.strategy == 'round_robin' then
    local cursor = redis.call('HGET', K_ST, 'rr') or '0'
    pick = redis.call('ZRANGEBYSCORE', K_AVAIL, '(' .. cursor, '+inf', 'LIMIT', 0, 1)[1]
      or redis.call('ZRANGE', K_AVAIL, 0, 0)[1]
  else
    -- least_connections (score = leases), weighted (score = pass), sticky without a key.
    pick = redis.call('ZRANGE', K_AVAIL, 0, 0)[1]
  end
  if not pick then return reserve() end
  local s = get_slot(pick)
  if c.strategy == 'round_robin' then redis.call('HSET', K_ST, 'rr', s.seq) end
  local expires, packed = grant(c, s, lease_id, holder, now, user)
  return lease_reply(lease_id, s, expires, 0, packed)
end

local reply = choose()
if reply[1] == 'W' and not reclaimed then
  reclaim_now()
  reply = choose()
end
if reply[1] == 'L' or reply[1] == 'R' then observe('w', tonumber(ARGV[4] or '0') or 0) end
return reply
