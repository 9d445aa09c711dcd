-- poolgate pool scripts: shared prelude, prepended to every pool script at load time.
--
-- KEYS (every pool script receives all fourteen, in this order; all carry the pool's hash tag so
-- each script touches one Cluster slot):
--   1 cfg    HASH  pool configuration synced from the store (strategy, iso, max, cap, ...)
--   2 slots  HASH  slot id -> MessagePack slot record (see SlotRecord in Rust)
--   3 all    ZSET  slot id -> created (ms); counts toward max (I1)
--   4 avail  ZSET  slots selectable now (spare capacity); score by strategy
--   5 bload  ZSET  slot id -> bindings (sticky: least-loaded first)
--   6 resv   ZSET  reservation id -> expiry (ms); counts toward max (I1)
--   7 rdata  HASH  reservation id -> MessagePack {ep, holder, key, lease}
--   8 leases ZSET  lease id -> expiry (ms)
--   9 ldata  HASH  lease id -> "slot id|holder"
--  10 bind   HASH  binding key -> slot id, or 'resv:<id>' while its first slot is being created
--  11 bexp   ZSET  binding key -> idle expiry (ms)
--  12 st     HASH  counters and cursors (seq, rr, vtime, fence, acq, rel, cre, des, tmo, reb, err, exp, ep:<i>,
--                  breakers bf:<i>/bo:<i>/bp:<i>, cfr = consecutive failed creations)
--  13 closing LIST records of slots removed where no caller could be told (acquire's reclaim pass):
--                  an outbox that `reclaim` drains, so every removed upstream session gets closed
--  14 users HASH   per user (the escaped subject of a token): 's:<u>' client sessions bound,
--                  'i:<u>' leases held (requests in flight), 't:<u>' the rate limit's theoretical
--                  arrival time (ms, GCRA). Counts are deleted at 0; stale 't:' fields are swept.
-- Every time comes from TIME here (I5): nodes never send a clock.
local K_CFG, K_SLOTS, K_ALL, K_AVAIL, K_BLOAD, K_RESV, K_RDATA, K_LEASES, K_LDATA, K_BIND, K_BEXP, K_ST, K_CLOSING =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local K_USERS = KEYS[14]
local OUTBOX_MAX = 10000
local PENDING = 'resv:'
local CHANNEL = K_ST .. ':ev'
local SLOT_VERSION = 1

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The pool's configuration, or nil when it was never synced (or Redis restarted empty). Kept
-- lean: it runs on every call (endpoint weights are parsed only by the paths that need them).
-- Fairness fields (absent when an older node synced: no limit): qs/qi sessions/leases per user,
-- ut unused-session TTL (ms), rl/rb rate limit per user (requests/s) and burst.
local function load_cfg()
  local r = redis.call('HMGET', K_CFG, 'strategy', 'iso', 'max', 'cap', 'lease_ttl', 'idle_ttl', 'resv_ttl', 'ew',
    'qs', 'qi', 'ut', 'rl', 'rb')
  if not r[1] then return nil end
  return {strategy = r[1], iso = r[2], max = tonumber(r[3]), cap = tonumber(r[4]), lease_ttl = tonumber(r[5]),
    idle_ttl = tonumber(r[6]), resv_ttl = tonumber(r[7]), ew = r[8], qs = tonumber(r[9] or '0'),
    qi = tonumber(r[10] or '0'), ut = tonumber(r[11] or '0'), rl = tonumber(r[12] or '0'), rb = tonumber(r[13] or '0')}
end

-- Per-user counters (K_USERS): a field at 0 is deleted, so the hash holds active users only.
local function user_add(field, by)
  if redis.call('HINCRBY', K_USERS, field, by) <= 0 then redis.call('HDEL', K_USERS, field) end
end

-- The user a client-session binding key belongs to ('session:<user>:<server>:<nonce>'); nil for
-- the other forms (a 2026-07-28 user's key, sticky affinity), which are not client sessions.
local function session_user(key)
  return string.match(key, '^session:([^:]*):')
end

-- Every binding is written and removed through these two, so 's:<user>' counts exactly the
-- client sessions (pending or bound) a user holds.
local function bind_put(key, value)
  if redis.call('HSET', K_BIND, key, value) == 1 then
    local u = session_user(key)
    if u then user_add('s:' .. u, 1) end
  end
end

local function bind_del(key)
  if redis.call('HDEL', K_BIND, key) == 1 then
    local u = session_user(key)
    if u then user_add('s:' .. u, -1) end
  end
end

-- How long a new binding lives before its first use: a client session that only initialized
-- ends after the unused TTL; any later request (or stream) extends it to the idle TTL.
local function first_ttl(c, key)
  if c.ut > 0 and session_user(key) then return math.min(c.ut, c.idle_ttl) end
  return c.idle_ttl
end

-- "slot id|holder[|user]" as stored in ldata.
local function ldata_of(ld)
  return string.match(ld, '^([^|]*)|([^|]*)|?(.*)$')
end

-- Endpoint weights, in endpoint order.
local function weights(c)
  if not c.weights then
    c.weights = {}
    for w in string.gmatch(c.ew or '1', '[^,]+') do c.weights[#c.weights + 1] = tonumber(w) end
  end
  return c.weights
end

-- Fields a slot record may lack when an older release wrote it (SPEC §8 mixed versions): read
-- as these defaults, like `#[serde(default)]` on the Rust side. Fields this release does not know
-- are kept as they are and written back untouched.
local SLOT_DEFAULTS = {v = 0, w = 1, l = 0, b = 0, seq = 0, c = 0, u = 0, r = 0, ew = 0, er = 0, pass = 0, used = 0}
local function decode_slot(raw)
  local s = cmsgpack.unpack(raw)
  for k, d in pairs(SLOT_DEFAULTS) do
    if s[k] == nil then s[k] = d end
  end
  return s
end

local function get_slot(id)
  local raw = redis.call('HGET', K_SLOTS, id)
  if not raw then return nil end
  return decode_slot(raw)
end

-- Stores a slot record; returns it packed (lease replies reuse it).
local function put_slot(s)
  local packed = cmsgpack.pack(s)
  redis.call('HSET', K_SLOTS, s.id, packed)
  return packed
end

local function bump(field, by)
  redis.call('HINCRBY', K_ST, field, by or 1)
end

-- Fleet-wide histograms (wait 'w', request time 'h'): a count per bucket ('wb:<i>', upper bounds
-- in ms below, i = #BUCKETS_MS for anything above) and the sum ('wms'). Same bounds as BUCKETS_MS
-- in control/mod.rs.
local BUCKETS_MS = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}
local function observe(prefix, ms)
  local i = #BUCKETS_MS
  for j, bound in ipairs(BUCKETS_MS) do
    if ms <= bound then i = j - 1; break end
  end
  bump(prefix .. 'b:' .. i)
  bump(prefix .. 'ms', ms)
end

-- Effective weight for the weighted strategy: endpoint weight scaled down by error rate and
-- latency (100 ms halves it). Deterministic given the slot's state.
local function eff_weight(s)
  local w = s.w * (1 - math.min(s.er, 0.95)) * 100 / (100 + s.ew)
  if w < 0.001 then w = 0.001 end
  return w
end

-- Whether a slot can be picked for a new lease or binding, and its score in avail.
local function selectable(c, s)
  if s.st ~= 'ready' then return false end
  if c.iso == 'session' then return s.used == 0 and s.l == 0 end
  return s.l < c.cap
end

local function avail_score(c, s)
  if c.iso == 'session' or c.strategy == 'round_robin' then return s.seq end
  if c.strategy == 'weighted' then return s.pass end
  return s.l
end

local function refresh(c, s)
  if selectable(c, s) then
    if c.strategy == 'weighted' then
      local vt = tonumber(redis.call('HGET', K_ST, 'vtime') or '0')
      if s.pass < vt then s.pass = vt end
    end
    redis.call('ZADD', K_AVAIL, avail_score(c, s), s.id)
  else
    redis.call('ZREM', K_AVAIL, s.id)
  end
  -- bload exists only for sticky shared pools (sync clears it when the strategy changes).
  if c.iso == 'shared' and c.strategy == 'sticky' then
    if s.st == 'ready' then
      redis.call('ZADD', K_BLOAD, s.b, s.id)
    else
      redis.call('ZREM', K_BLOAD, s.id)
    end
  end
end

-- Removes a slot for good; returns its packed record so the caller can close the upstream session.
local function delete_slot(s)
  redis.call('HDEL', K_SLOTS, s.id)
  redis.call('ZREM', K_ALL, s.id)
  redis.call('ZREM', K_AVAIL, s.id)
  redis.call('ZREM', K_BLOAD, s.id)
  bump('ep:' .. s.ep, -1)
  bump('des')
  s.st = 'closed'
  return cmsgpack.pack(s)
end

-- A slot leaves when nothing holds it any more: retired or unhealthy with no leases, or
-- draining with no leases and no bindings. Returns the packed record when it was deleted.
local function settle(c, s, closed)
  local gone = (s.st == 'retired' or s.st == 'unhealthy') and s.l == 0
  gone = gone or (s.st == 'draining' and s.l == 0 and s.b == 0)
  if gone then
    closed[#closed + 1] = delete_slot(s)
    return true
  end
  put_slot(s)
  refresh(c, s)
  return false
end

local function lease_reply(lease_id, s, expires, fresh, packed)
  return {'L', lease_id, s.id, packed or cmsgpack.pack(s), expires, fresh}
end

local function grant(c, s, lease_id, holder, now, user)
  s.l = s.l + 1
  s.r = s.r + 1
  s.u = now
  if c.strategy == 'weighted' and c.iso == 'shared' then
    local vt = tonumber(redis.call('HGET', K_ST, 'vtime') or '0')
    if s.pass < vt then s.pass = vt end
    redis.call('HSET', K_ST, 'vtime', s.pass)
    s.pass = s.pass + 1000000 / eff_weight(s)
  end
  local packed = put_slot(s)
  refresh(c, s)
  local expires = now + c.lease_ttl
  redis.call('ZADD', K_LEASES, expires, lease_id)
  if user and user ~= '' then
    redis.call('HSET', K_LDATA, lease_id, s.id .. '|' .. holder .. '|' .. user)
    user_add('i:' .. user, 1)
  else
    redis.call('HSET', K_LDATA, lease_id, s.id .. '|' .. holder)
  end
  bump('acq')
  return expires, packed
end

local function unbind_key(c, key, closed)
  local sid = redis.call('HGET', K_BIND, key)
  bind_del(key)
  redis.call('ZREM', K_BEXP, key)
  if not sid then return false end
  local s = get_slot(sid)
  if s then
    s.b = math.max(0, s.b - 1)
    if s.used == 1 then s.st = 'retired' end -- session isolation: never reused after its binding (I8)
    settle(c, s, closed)
  end
  redis.call('PUBLISH', CHANNEL, 'u')
  return true
end

local function release_lease(c, lease_id, latency, err, retire, closed)
  local ld = redis.call('HGET', K_LDATA, lease_id)
  if not ld then return false end -- unknown, expired or already released: nothing changes (I3)
  redis.call('HDEL', K_LDATA, lease_id)
  redis.call('ZREM', K_LEASES, lease_id)
  local sid, _, user = ldata_of(ld)
  if user and user ~= '' then user_add('i:' .. user, -1) end
  local s = get_slot(sid)
  if s then
    s.l = math.max(0, s.l - 1)
    if latency >= 0 then
      if s.ew == 0 then s.ew = latency else s.ew = s.ew * 0.8 + latency * 0.2 end
      observe('h', latency)
      bump('hn:' .. s.ep)
      bump('hm:' .. s.ep, latency)
    end
    s.er = s.er * 0.9 + err * 0.1
    -- A request that went well at this endpoint: its breaker's failures in a row end.
    if err == 0 and latency >= 0 then redis.call('HDEL', K_ST, 'bf:' .. s.ep, 'bo:' .. s.ep, 'bp:' .. s.ep) end
    -- Under `none` a session is never leased twice: once its last lease ends (and no client
    -- session is bound to it) it leaves the pool instead of holding capacity.
    if retire == 1 or (c.strategy == 'none' and s.l == 0 and s.b == 0) then s.st = 'retired' end
    settle(c, s, closed)
  end
  if err == 1 then bump('err') end
  bump('rel')
  redis.call('PUBLISH', CHANNEL, 'r')
  return true
end

local function abort_resv(id)
  local rd = redis.call('HGET', K_RDATA, id)
  redis.call('ZREM', K_RESV, id)
  redis.call('HDEL', K_RDATA, id)
  if not rd then return false end
    local r = cmsgpack.unpack(rd)
  bump('ep:' .. r.ep, -1)
  if r.lease ~= 1 then bump('wres', -1) end
  if r.key ~= '' and redis.call('HGET', K_BIND, r.key) == PENDING .. id then
    bind_del(r.key)
    redis.call('ZREM', K_BEXP, r.key)
  end
  redis.call('PUBLISH', CHANNEL, 'a')
  return true
end

-- The endpoint with the fewest slots (and creations in flight) for its weight.
-- Circuit breakers, per endpoint index i, in st: 'bf:<i>' consecutive failures, 'bo:<i>' the time
-- (ms) until which the breaker is open, 'bp:<i>' its open period (ms). Past 'bo' while 'bf' is
-- still set, the breaker is half-open: the next creation there is a probe, and picking it re-arms
-- 'bo' so only one probe runs at a time. A commit there (a session created) closes it.
-- The endpoint for a new slot: the fewest slots (and creations in flight) for its weight among
-- those whose breaker is not open; nil when every breaker is open.
local function pick_endpoint(c, now)
  local best, best_load = nil, nil
  for i, w in ipairs(weights(c)) do
    local f = redis.call('HMGET', K_ST, 'ep:' .. (i - 1), 'bo:' .. (i - 1))
    if tonumber(f[2] or '0') <= now then
      local load = tonumber(f[1] or '0') / w
      if best_load == nil or load < best_load then best, best_load = i - 1, load end
    end
  end
  if best then
    local bp = redis.call('HGET', K_ST, 'bp:' .. best)
    if bp then redis.call('HSET', K_ST, 'bo:' .. best, now + tonumber(bp)) end
  end
  return best
end

-- Keeps records of removed slots for a later `reclaim` to hand out (bounded).
local function push_outbox(closed)
  if #closed == 0 then return end
  for _, r in ipairs(closed) do redis.call('RPUSH', K_CLOSING, r) end
  redis.call('LTRIM', K_CLOSING, -OUTBOX_MAX, -1)
end

-- Reclaims up to `limit` expired leases, bindings and reservations (I4). Returns counts.
local function reclaim(c, now, limit, closed)
  local n_l, n_b, n_r = 0, 0, 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, limit)) do
    if release_lease(c, id, -1, 0, 0, closed) then n_l = n_l + 1; bump('exp') end
  end
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', K_BEXP, '-inf', now, 'LIMIT', 0, limit)) do
    if unbind_key(c, key, closed) then n_b = n_b + 1 end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_RESV, '-inf', now, 'LIMIT', 0, limit)) do
    if abort_resv(id) then n_r = n_r + 1 end
  end
  -- Rate-limit states in the past carry no information: sweep a few per pass.
  local scan = redis.call('HSCAN', K_USERS, redis.call('HGET', K_ST, 'ucur') or '0', 'MATCH', 't:*', 'COUNT', 16)
  redis.call('HSET', K_ST, 'ucur', scan[1])
  for i = 1, #scan[2], 2 do
    if tonumber(scan[2][i + 1]) <= now then redis.call('HDEL', K_USERS, scan[2][i]) end
  end
  return n_l, n_b, n_r
end

-- The per-user rate limit (GCRA, one theoretical arrival time per user): nil when the request is
-- admitted (and charged), else the refusal {'T', retry_ms, rate, burst}.
local function rate_check(c, user, now)
  if c.rl <= 0 or user == '' then return nil end
  local t = 1000 / c.rl
  local burst = c.rb > 0 and c.rb or c.rl
  local tat = tonumber(redis.call('HGET', K_USERS, 't:' .. user) or '0')
  if tat < now then tat = now end
  local next_tat = tat + t
  if next_tat - now > burst * t then return {'T', math.ceil(next_tat - now - burst * t), c.rl, burst} end
  redis.call('HSET', K_USERS, 't:' .. user, string.format('%.3f', next_tat))
  return nil
end

-- A user's count ('s' sessions, 'i' leases in flight).
local function user_count(kind, user)
  return tonumber(redis.call('HGET', K_USERS, kind .. ':' .. user) or '0')
end

-- Refuses a leader-only write whose fencing token is older than one already seen here (I6).
local function check_fence(token)
  local seen = tonumber(redis.call('HGET', K_ST, 'fence') or '0')
  if token < seen then return false, seen end
  if token > seen then redis.call('HSET', K_ST, 'fence', token) end
  return true, seen
end
