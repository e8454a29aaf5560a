--[[
  Pause or resume a queue: while paused, lease.lua hands out nothing, on every replica.
  Keys: prefix meta events
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] paused: '1' to pause, '' to resume
  Output: changed
    1 when the flag changed, 0 when it already was so.
]]
-- @include lib/base.lua

local meta, events = KEYS[2], KEYS[3]
local paused = redis.call('HGET', meta, 'paused') == '1'
local want = ARGV[2] == '1'
if paused == want then
  return done(0)
end
if want then
  redis.call('HSET', meta, 'paused', '1')
  emit(events, ARGV[1], 'paused', '', {})
else
  redis.call('HDEL', meta, 'paused')
  emit(events, ARGV[1], 'resumed', '', {})
end
return done(1)
