-- leader election (keys of the leader hash tag, not of a pool).
-- KEYS: 1 holder (STRING "holder|term", expiry set here by PX — never by a node)  2 term (counter, never deleted)
-- ARGV: 1 op (campaign | renew | resign | seed)  2 holder  3 term (renew, resign; seed: the least
--       value the counter must hold)  4 ttl ms (campaign, renew)
-- Reply: campaign {1, term} won / {0, current "holder|term"}; renew and resign {1} / {0}; seed {1}
-- `seed`: after a failover that lost the counter's last INCR (on Redis Cluster the counter and
-- the pools' fences live on different shards), a new leader finds a pool fenced with a newer
-- token than its term; it raises the counter past that token, resigns, and campaigns again.
local op, holder = ARGV[1], ARGV[2]
if op == 'seed' then
  local min = tonumber(ARGV[3])
  if tonumber(redis.call('GET', KEYS[2]) or '0') < min then redis.call('SET', KEYS[2], min) end
  return {1}
end
if op == 'campaign' then
  local cur = redis.call('GET', KEYS[1])
  if cur then return {0, cur} end
  local term = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], holder .. '|' .. term, 'PX', tonumber(ARGV[4]))
  return {1, term}
end
local mine = holder .. '|' .. ARGV[3]
if redis.call('GET', KEYS[1]) ~= mine then return {0} end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {1}
end
if op == 'resign' then
  redis.call('DEL', KEYS[1])
  return {1}
end
return redis.error_reply('unknown leader op ' .. tostring(op))
