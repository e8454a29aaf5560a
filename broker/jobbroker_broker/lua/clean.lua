--[[
  Clean a queue: remove jobs of one state that entered it before a cutoff, a bounded batch
  per call. The caller repeats until a call removes fewer than it asked for; that call emits
  one `cleaned` event with the total.
  Keys: prefix waiting delayed completed failed cancelled expiring events
  Input:
    ARGV[1] events maxlen
    ARGV[2] state: waiting, delayed, completed, failed or cancelled
    ARGV[3] grace ms: only jobs that entered the state at least this long ago
    ARGV[4] most jobs to remove in this call
    ARGV[5] jobs removed by the previous calls of this clean
  Output: the removed job ids.
]]
-- @include lib/base.lua

local prefix, state, grace, limit = KEYS[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local set = ({waiting = KEYS[2], delayed = KEYS[3], completed = KEYS[4], failed = KEYS[5],
  cancelled = KEYS[6]})[state]
local now = now_ms()
local candidates
if state == 'waiting' or state == 'delayed' then
  -- Their scores are not entry times: read the creation time from each job.
  candidates = redis.call('ZRANGE', set, 0, limit * 2 - 1)
else
  candidates = redis.call('ZRANGE', set, '-inf', now - grace, 'BYSCORE', 'LIMIT', 0, limit)
end
local removed = {}
for _, id in ipairs(candidates) do
  if #removed >= limit then
    break
  end
  local old = true
  if state == 'waiting' or state == 'delayed' then
    old = (tonumber(redis.call('HGET', job_key(prefix, id), 'ct')) or 0) <= now - grace
  end
  if old then
    redis.call('ZREM', set, id)
    redis.call('ZREM', KEYS[7], id)
    remove_job_keys(prefix, id)
    removed[#removed + 1] = id
  end
end
if #removed < limit then
  emit(KEYS[8], ARGV[1], 'cleaned', '', {'s', state, 'c', #removed + tonumber(ARGV[5])})
end
return done(removed)
