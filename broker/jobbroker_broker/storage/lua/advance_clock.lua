--[[
  Test clock (Settings.test_clock): move the queue's "now" forward. Every script of a broker
  with the test clock reads now_ms() as Redis' time plus the `clock` key (lib/test_clock.lua).
  Rate-limit windows are key TTLs, which Redis counts in real time, so the windows under way
  (the queue's `limiter`, and the given groups' counters) are shortened by the same amount,
  and end when they would have ended by then.
  Keys: prefix clock limiter
  Input:
    ARGV[1] ms: how far to move, in ms (not negative)
    ARGV[2] group_count: number of groups N
    then per group:
      group: a group whose window counter (`gcount:<group>`) to shorten
  Output: offset
    the queue's clock offset now, in ms ahead of Redis' time.
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local clock, limiter = KEYS[2], KEYS[3]
local ms, n = tonumber(ARGV[1]), tonumber(ARGV[2])

local function shorten(key)
  local ttl = redis.call('PTTL', key)
  if ttl > ms then
    redis.call('PEXPIRE', key, ttl - ms)
  elseif ttl > 0 then
    redis.call('DEL', key)
  end
end

shorten(limiter)
for i = 0, n - 1 do
  local b = 3 + i * 1
  shorten(group_counter(KEYS[1], ARGV[b]))
end
return redis.call('INCRBY', clock, ms)
