--[[
  Drain a queue: remove waiting jobs (those parked by a group rate limit too) and delayed ones
  when asked, a bounded batch per call.
  The caller repeats until a call removes fewer than the batch; that call emits one `purged`
  event with the total (not `drained`: that is BullMQ's "ran empty", emitted by lease.lua).
  Keys: prefix waiting delayed expiring events meta groups
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
    ARGV[3] delayed: '1' to drain delayed jobs too
    ARGV[4] removed_before: jobs removed by the previous calls of this drain
  Output: removed
    the number of jobs removed by this call.
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local prefix, batch = KEYS[1], tonumber(ARGV[2])
local removed = 0
local sets = {KEYS[2]}
if ARGV[3] == '1' then
  sets[2] = KEYS[3]
end
for _, set in ipairs(sets) do
  if removed < batch then
    local ids = redis.call('ZRANGE', set, 0, batch - removed - 1)
    for _, id in ipairs(ids) do
      redis.call('ZREM', set, id)
      redis.call('ZREM', KEYS[4], id)
      remove_job_keys(prefix, id)
    end
    removed = removed + #ids
  end
end
if removed < batch then
  removed = removed + drop_parked(prefix, KEYS[6], KEYS[7], KEYS[4], batch - removed)
end
if removed < batch then
  emit(KEYS[5], ARGV[1], 'purged', '', {'c', removed + tonumber(ARGV[4])})
end
return done(removed)
