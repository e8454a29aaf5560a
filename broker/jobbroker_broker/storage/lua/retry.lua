--[[
  Retry a failed or cancelled job: back to waiting with a fresh set of attempts.
  Keys: prefix waiting failed cancelled expiring events seq
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] id: job id
  Output: {reason, state}
    reason '' and state waiting when done; else JOB_NOT_FOUND, or JOB_NOT_RETRYABLE with the
    job's state.
]]
-- @include lib/base.lua
-- @include lib/retry.lua

local prefix, id = KEYS[1], ARGV[2]
local jkey = job_key(prefix, id)
local st = redis.call('HGET', jkey, 'st')
if not st then
  return done({'JOB_NOT_FOUND', ''})
end
if st ~= 'failed' and st ~= 'cancelled' then
  return done({'JOB_NOT_RETRYABLE', st})
end
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
restart(prefix, KEYS[2], KEYS[5], KEYS[7], KEYS[6], ARGV[1], id, now_ms())
return done({'', 'waiting'})
