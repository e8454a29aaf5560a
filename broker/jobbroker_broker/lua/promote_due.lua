--[[
  Maintenance: move delayed jobs whose time has come to waiting, a bounded batch per call.
  Keys: prefix waiting delayed events seq
  Input:
    ARGV[1] events maxlen
    ARGV[2] batch size
  Output: {moved, next due time in ms (-1 = none), now}
]]
-- @include lib/base.lua

local prefix, waiting, delayed, events, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  make_waiting(prefix, waiting, seq, events, ARGV[1], id)
end
return done({#due, next_score(delayed), now})
