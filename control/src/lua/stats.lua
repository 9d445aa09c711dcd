-- stats: the pool's figures (read-only; O(slots), for the API and the coordinator, not the hot path).
-- ARGV: none.  Reply: flat list of name, value pairs.
local reply = {}
local function put(k, v) reply[#reply + 1] = k; reply[#reply + 1] = tonumber(v) or 0 end
put('configured', redis.call('EXISTS', K_CFG))
local cfg = redis.call('HMGET', K_CFG, 'max', 'enabled')
put('cfg_max', cfg[1] or 0)
put('cfg_enabled', cfg[2] == '0' and 0 or 1)
put('slots', redis.call('ZCARD', K_ALL))
put('reservations', redis.call('ZCARD', K_RESV))
put('leases', redis.call('ZCARD', K_LEASES))
put('bindings', redis.call('HLEN', K_BIND))
put('available', redis.call('ZCARD', K_AVAIL))
local counts = {ready = 0, draining = 0, unhealthy = 0, retired = 0, busy = 0}
for _, raw in ipairs(redis.call('HVALS', K_SLOTS)) do
  local s = decode_slot(raw)
  counts[s.st] = (counts[s.st] or 0) + 1
  if s.l > 0 then counts.busy = counts.busy + 1 end
end
for k, v in pairs(counts) do put('state_' .. k, v) end
local st = redis.call('HGETALL', K_ST)
local now = now_ms()
for i = 1, #st, 2 do
  local k = st[i]
  if string.sub(k, 1, 3) == 'bo:' then
    -- A breaker that opened and has not closed since: open until 'bo', half-open after it.
    put('st_bs:' .. string.sub(k, 4), tonumber(st[i + 1]) > now and 1 or 2)
  else
    put('st_' .. k, st[i + 1])
  end
end
return reply
