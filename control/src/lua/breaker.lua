-- breaker: one outcome at an endpoint, for its fleet-wide circuit breaker (see the prelude).
-- ARGV: 1 endpoint index  2 outcome: 'ok' (a probe answered), 'create' (a slot's session could not
--       be created), 'fail' (a transport failure, timeout, 5xx or protocol violation)
--       3 threshold (consecutive failures that open it; 0 = never)  4 open period (ms)
-- Reply: {state (0 closed, 1 open, 2 half-open), consecutive failures}
local ep, outcome = ARGV[1], ARGV[2]
local threshold, open_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
if outcome == 'ok' then
  redis.call('HDEL', K_ST, 'bf:' .. ep, 'bo:' .. ep, 'bp:' .. ep, 'cfr')
  return {0, 0}
end
if outcome == 'create' then bump('cfr') end
local n = redis.call('HINCRBY', K_ST, 'bf:' .. ep, 1)
if threshold > 0 and n >= threshold then
  redis.call('HSET', K_ST, 'bo:' .. ep, now_ms() + open_ms, 'bp:' .. ep, open_ms)
  return {1, n}
end
return {0, n}
