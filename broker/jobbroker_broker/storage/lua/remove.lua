--[[
  Remove a job that is not active, with its logs.
  Keys: prefix waiting delayed completed failed cancelled expiring events meta
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] id: job id
  Output: {reason, state}
    reason '' and the state it was in when done; else JOB_NOT_FOUND, or JOB_ACTIVE.
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local prefix, id = KEYS[1], ARGV[2]
local f = redis.call('HMGET', job_key(prefix, id), 'st', 'grp')
local st = f[1]
if not st then
  return done({'JOB_NOT_FOUND', ''})
end
if st == 'active' then
  return done({'JOB_ACTIVE', st})
end
for i = 2, 7 do
  redis.call('ZREM', KEYS[i], id)
end
unpark_one(prefix, KEYS[9], id, f[2])
remove_job_keys(prefix, id)
emit(KEYS[8], ARGV[1], 'removed', id, {'s', st})
return done({'', st})
