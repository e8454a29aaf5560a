--[[
  Cancel a job. Waiting or delayed: cancelled at once. Active: flagged, and a cancel-requested
  event tells its worker to stop; it ends cancelled when the worker reports or its lease ends.
  Keys: prefix waiting delayed expiring cancelled events signals meta
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] id: job id
    ARGV[3] cancel_reason: the reason given to Cancel
  Output: {reason, state}
    reason '' when done, with the state after (cancelled, or active while its worker is told);
    else JOB_NOT_FOUND, or JOB_FINISHED with the job's state.
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/groups.lua

local prefix, events, maxlen, id = KEYS[1], KEYS[6], ARGV[1], ARGV[2]
local jkey = job_key(prefix, id)
local f = redis.call('HMGET', jkey, 'st', 'cr', 'fn', 'w', 'grp')
local st = f[1]
if not st then
  return done({'JOB_NOT_FOUND', ''})
end
local now = now_ms()
if st == 'waiting' or st == 'delayed' then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  unpark_one(prefix, KEYS[8], id, f[5])
  redis.call('HSET', jkey, 'crr', ARGV[3])
  finish_cancelled(prefix, events, maxlen, KEYS[5], id, now)
  return done({'', 'cancelled'})
end
if st == 'active' then
  if f[2] ~= '1' then
    redis.call('HSET', jkey, 'cr', 1, 'crr', ARGV[3])
    emit(events, maxlen, 'cancel-requested', id, {'s', 'active', 'f', f[3], 'w', f[4] or ''})
    signal(KEYS[7], 'cancel-requested', id, f[3], f[4])
  end
  return done({'', 'active'})
end
return done({'JOB_FINISHED', st})
