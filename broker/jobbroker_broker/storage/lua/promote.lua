--[[
  Promote one delayed job to waiting now.
  Keys: prefix waiting delayed events seq
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] id: job id
  Output: {reason, state}
    reason '' and state waiting when done; else JOB_NOT_FOUND, or JOB_NOT_DELAYED with the
    job's state.
]]
-- @include lib/base.lua

local prefix, id = KEYS[1], ARGV[2]
local st = redis.call('HGET', job_key(prefix, id), 'st')
if not st then
  return done({'JOB_NOT_FOUND', ''})
end
if st ~= 'delayed' then
  return done({'JOB_NOT_DELAYED', st})
end
redis.call('ZREM', KEYS[3], id)
make_waiting(prefix, KEYS[2], KEYS[5], KEYS[4], ARGV[1], id)
return done({'', 'waiting'})
