-- sync: store the pool's configuration (from the database) and converge the pool to it.
-- ARGV: alternating field, value pairs: strategy iso max cap lease_ttl idle_ttl resv_ttl sticky_c
--       ew, then (from this release on) hash (digest of everything), and the pool's identity:
--       enabled (0|1), inc (the server's creation ms), hdr (upstream headers' fingerprint), eps
--       (endpoint URLs in order, joined by newlines).
-- A call whose hash equals the stored one changes nothing (the reconcile pass syncs every pool
-- every interval). Otherwise the configuration is stored and the pool converges (I14):
--   * another incarnation (the server was deleted and re-created) or other headers: every slot
--     leaves — its bindings end (the client gets 404 and re-initializes), an idle slot is deleted
--     at once, a leased one when its lease ends;
--   * a slot whose endpoint URL is no longer one of the server's leaves the same way; a slot
--     whose endpoint moved in the list follows it (its index and weight);
--   * disabled: every slot drains (idle unbound ones go at once, the rest when they finish);
--   * a lowered max (I1): the slots beyond it retire, idle ones first, then busy, then bound.
-- Removed slots go to the closing outbox (`reclaim` hands them out to be closed upstream).
-- Rebuilds the selection sets when strategy, isolation, capacity or weights change.
-- Reply: {generation, changed (0|1)}.
local f = {}
for i = 1, #ARGV - 1, 2 do f[ARGV[i]] = ARGV[i + 1] end
local stored = redis.call('HMGET', K_CFG, 'hash', 'inc', 'hdr', 'enabled', 'gen', 'eps')
if f.hash and stored[1] == f.hash then return {tonumber(stored[5] or '0'), 0} end
local old = load_cfg()
local args = {}
for i = 1, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('HSET', K_CFG, unpack(args))
local gen = redis.call('HINCRBY', K_CFG, 'gen', 1)
local c = load_cfg()
local closed = {}
if old ~= nil and f.inc then
  local reborn = (stored[2] and stored[2] ~= f.inc) or (stored[3] and stored[3] ~= f.hdr)
  local moved = stored[6] and stored[6] ~= (f.eps or '')
  if reborn or moved or (f.enabled == '0' and stored[4] ~= '0') then
    -- Creations in flight were started for what the pool was: their commits find no
    -- reservation, and the node closes the session it opened.
    for _, id in ipairs(redis.call('ZRANGE', K_RESV, 0, -1)) do abort_resv(id) end
  end
  if moved then
    -- Breakers belong to endpoint indexes, which no longer mean the same URLs.
    local n = 0
    for _ in string.gmatch(stored[6], '[^\n]+') do n = n + 1 end
    for _ in string.gmatch(f.eps or '', '[^\n]+') do n = n + 1 end
    for i = 0, n do redis.call('HDEL', K_ST, 'bf:' .. i, 'bo:' .. i, 'bp:' .. i) end
  end
  local index = {}
  local n = 0
  for url in string.gmatch(f.eps or '', '[^\n]+') do
    index[url] = n
    n = n + 1
  end
  local leaving = {}
  local any = false
  for _, raw in ipairs(redis.call('HVALS', K_SLOTS)) do
    local s = decode_slot(raw)
    local url = type(s.m) == 'table' and s.m.endpoint or nil
    local at = url and index[url]
    if reborn or (url and at == nil) then
      leaving[s.id] = true
      any = true
    elseif at and at ~= s.ep then
      bump('ep:' .. s.ep, -1)
      bump('ep:' .. at)
      s.ep = at
      s.w = weights(c)[at + 1] or 1
      put_slot(s)
    end
  end
  if any then
    local binds = redis.call('HGETALL', K_BIND)
    for i = 1, #binds, 2 do
      if leaving[binds[i + 1]] then unbind_key(c, binds[i], closed) end
    end
    for id in pairs(leaving) do
      local s = get_slot(id)
      if s then
        s.st = 'retired'
        settle(c, s, closed)
      end
    end
  end
end
if f.enabled == '0' and stored[4] ~= '0' then
  for _, raw in ipairs(redis.call('HVALS', K_SLOTS)) do
    local s = decode_slot(raw)
    if s.st == 'ready' then
      s.st = 'draining'
      settle(c, s, closed)
    end
  end
end
-- A lowered max (I1): slots beyond it retire, oldest first — idle ones (deleted at once), then
-- busy ones (deleted when their call ends), then bound ones (their bindings end).
if old ~= nil then
  local live = {}
  for _, id in ipairs(redis.call('ZRANGE', K_ALL, 0, -1)) do
    local s = get_slot(id)
    if s and s.st ~= 'retired' then live[#live + 1] = s end
  end
  local excess = #live - c.max
  if excess > 0 then
    local binds = nil
    for tier = 1, 3 do
      for _, s in ipairs(live) do
        local t = (s.b > 0 and 3) or (s.l > 0 and 2) or 1
        if excess > 0 and t == tier then
          if s.b > 0 then
            binds = binds or redis.call('HGETALL', K_BIND)
            for i = 1, #binds, 2 do
              if binds[i + 1] == s.id then unbind_key(c, binds[i], closed) end
            end
            s = get_slot(s.id)
          end
          if s then
            s.st = 'retired'
            settle(c, s, closed)
          end
          excess = excess - 1
        end
      end
    end
  end
end
push_outbox(closed)
if old == nil or old.strategy ~= c.strategy or old.iso ~= c.iso or old.cap ~= c.cap or old.ew ~= c.ew then
  redis.call('DEL', K_AVAIL, K_BLOAD)
  for _, raw in ipairs(redis.call('HVALS', K_SLOTS)) do
    local s = decode_slot(raw)
    s.w = weights(c)[s.ep + 1] or 1
    put_slot(s)
    refresh(c, s)
  end
end
redis.call('PUBLISH', CHANNEL, 's')
return {gen, 1}
