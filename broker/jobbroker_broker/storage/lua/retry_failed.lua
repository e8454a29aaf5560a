--[[
  Retry failed jobs in bulk: failed -> waiting with a fresh set of attempts, a bounded batch
  per call. The caller repeats until a call moves fewer than the batch.
  Keys: prefix waiting failed expiring events seq
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
  Output: moved
    the number of jobs moved by this call.
]]
-- @include lib/base.lua
-- @include lib/retry.lua

local prefix, waiting, failed, expiring, events, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ids = redis.call('ZRANGE', failed, 0, tonumber(ARGV[2]) - 1)
local now = now_ms()
for _, id in ipairs(ids) do
  redis.call('ZREM', failed, id)
  restart(prefix, waiting, expiring, seq, events, ARGV[1], id, now)
end
return done(#ids)
