-- recycle (leader only, fenced): retire idle slots older than max_age and remove idle unhealthy ones.
-- ARGV: 1 fencing token  2 max age ms  3 limit.
-- Reply: {'F', newest_token} when refused (a newer leader exists); else {'OK', closed slot records...}
local ok, seen = check_fence(tonumber(ARGV[1]))
if not ok then return {'F', seen} end
local c = load_cfg()
if not c then return {'OK'} end
local now = now_ms()
local closed = {}
local limit = tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_ALL, '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, limit)) do
  local s = get_slot(id)
  if s and s.l == 0 and s.b == 0 then
    s.st = 'retired'
    settle(c, s, closed)
  end
end
local reply = {'OK'}
for _, r in ipairs(closed) do reply[#reply + 1] = r end
return reply
