--[[
  Maintenance: fail waiting and delayed jobs whose lifespan ran out (reason EXPIRED), a bounded
  batch per call.
  Keys: prefix waiting delayed expiring failed events meta
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
  Output: {handled, next_due, now}
    jobs expired, the next lifespan deadline in ms (-1 = none), and Redis' time.
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/groups.lua

local prefix, expiring, events = KEYS[1], KEYS[4], KEYS[6]
local maxlen = ARGV[1]
local now = now_ms()
local due = redis.call('ZRANGE', expiring, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', expiring, id)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'st', 'lsp', 'am', 'grp')
  if f[1] == 'waiting' or f[1] == 'delayed' then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    unpark_one(prefix, KEYS[7], id, f[4])
    finish_failed(prefix, events, maxlen, KEYS[5], id, now, 3,
      'job did not start within its lifespan of ' .. f[2] .. ' ms', '', '', tonumber(f[3]) or 0)
  end
end
return done({#due, next_score(expiring), now})
