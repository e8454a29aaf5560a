-- "Now", for every script: Redis' clock, in ms since the epoch. A broker started with
-- Settings.test_clock loads lib/test_clock.lua in its place (scripts.py): the same function,
-- moved forward by the queue's test clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
