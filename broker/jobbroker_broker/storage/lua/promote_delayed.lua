--[[
  Promote delayed jobs in bulk: delayed -> waiting now, a bounded batch per call. The caller
  repeats until a call moves fewer than the batch.
  Keys: prefix waiting delayed events seq
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
  Output: moved
    the number of jobs moved by this call.
]]
-- @include lib/base.lua

local prefix, waiting, delayed, events, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ids = redis.call('ZRANGE', delayed, 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZREM', delayed, id)
  make_waiting(prefix, waiting, seq, events, ARGV[1], id)
end
return done(#ids)
