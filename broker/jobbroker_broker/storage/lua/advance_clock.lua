--[[
  Test clock (Settings.test_clock): move the queue's "now" forward. Every script of a broker
  with the test clock reads now_ms() as Redis' time plus the `clock` key (lib/test_clock.lua);
  rate-limit windows are key TTLs, which Redis counts in real time, so the windows under way
  (the queue's `limiter`, and the counters of the groups with parked jobs, at most 1,000) are
  shortened by the same amount, and end when they would have ended by then.
  Keys: prefix clock limiter groups
  Input:
    ARGV[1] ms: how far to move, in ms (not negative)
  Output: offset
    the queue's clock offset now, in ms ahead of Redis' time.
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local clock, limiter, groups = KEYS[2], KEYS[3], KEYS[4]
local ms = tonumber(ARGV[1])

local function shorten(key)
  local ttl = redis.call('PTTL', key)
  if ttl > ms then
    redis.call('PEXPIRE', key, ttl - ms)
  elseif ttl > 0 then
    redis.call('DEL', key)
  end
end

shorten(limiter)
for _, group in ipairs(redis.call('ZRANGE', groups, 0, 999)) do
  shorten(group_counter(KEYS[1], group))
end
return redis.call('INCRBY', clock, ms)
