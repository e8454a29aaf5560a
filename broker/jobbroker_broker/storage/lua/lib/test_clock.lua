-- "Now" on the test clock (Settings.test_clock; scripts.py loads this file in place of
-- lib/clock.lua): Redis' clock plus the ms the queue's `clock` key holds (advance_clock.lua
-- moves it). The key hangs off the queue prefix KEYS[1], so it is in the queue's slot.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    + (tonumber(redis.call('GET', KEYS[1] .. 'clock')) or 0)
end
