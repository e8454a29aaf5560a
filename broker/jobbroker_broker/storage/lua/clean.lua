--[[
  Clean a queue: remove jobs of one state that entered it before a cutoff, a bounded batch
  per call. Finished jobs are scored by finish time, so the oldest come first. Waiting and
  delayed jobs are not ordered by age: they are scanned from a cursor, a bounded slice per
  call, judged by creation time. The caller repeats until the cursor comes back -1 or its
  limit is reached; the last call emits one `cleaned` event with the total.
  Keys: prefix waiting delayed completed failed cancelled expiring events
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] state: waiting, delayed, completed, failed or cancelled
    ARGV[3] grace_ms: only jobs that entered the state at least this long ago
    ARGV[4] limit: most jobs to remove in this call
    ARGV[5] removed_before: jobs removed by the previous calls of this clean
    ARGV[6] cursor: (waiting and delayed only) where the previous call stopped, 0 at first
    ARGV[7] last: '1' when this call's removals reach the caller's limit
  Output: {cursor, removed...}
    the next cursor (-1: done), then the ids of the jobs removed.
]]
-- @include lib/base.lua

local prefix, waiting, delayed, completed, failed, cancelled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local expiring, events = KEYS[7], KEYS[8]
local state, grace, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local set = ({waiting = waiting, delayed = delayed, completed = completed, failed = failed,
  cancelled = cancelled})[state]
local now = now_ms()
local cutoff = now - grace
local scanned = state == 'waiting' or state == 'delayed'
local cursor = tonumber(ARGV[6]) or 0
local slice = math.max(limit, 100) * 4
local candidates
if scanned then
  candidates = redis.call('ZRANGE', set, cursor, cursor + slice - 1)
else
  candidates = redis.call('ZRANGE', set, '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, limit)
end
local out = {0}
local kept = 0
for _, id in ipairs(candidates) do
  if #out - 1 >= limit then
    break
  end
  if not scanned or (tonumber(redis.call('HGET', job_key(prefix, id), 'ct')) or 0) <= cutoff then
    redis.call('ZREM', set, id)
    redis.call('ZREM', expiring, id)
    remove_job_keys(prefix, id)
    out[#out + 1] = id
  else
    kept = kept + 1
  end
end
local removed = #out - 1
if removed < limit and (not scanned or #candidates < slice) then
  out[1] = -1 -- nothing more to find
elseif scanned then
  out[1] = cursor + kept -- the removed entries no longer shift what comes after
end
if out[1] == -1 or (ARGV[7] == '1' and removed == limit) then
  emit(events, ARGV[1], 'cleaned', '', {'s', state, 'c', removed + tonumber(ARGV[5])})
end
return done(out)
