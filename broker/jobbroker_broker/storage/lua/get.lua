--[[
  Read a job's snapshot with the id of the newest event of its queue, atomically, so that a
  subscriber can follow on from exactly that point.
  Keys: prefix events
  Input:
    ARGV[1] id: job id
  Output: {fields, log_count, last_event_id}
    the job hash as a flat name/value list (empty: no such job), its number of log lines, and
    the newest event id ('' = none).
]]
-- @include lib/base.lua

local prefix, id = KEYS[1], ARGV[1]
local fields = redis.call('HGETALL', job_key(prefix, id))
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last_id = ''
if #last > 0 then
  last_id = last[1][1]
end
return {fields, redis.call('LLEN', logs_key(prefix, id)), last_id}
