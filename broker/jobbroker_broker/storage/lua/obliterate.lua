--[[
  Obliterate a queue: remove every job and every schedule, then every key of the queue, a
  bounded batch per call.
  Refused while jobs are active unless forced. The caller repeats until the output is 0.
  Keys: prefix waiting delayed active completed failed cancelled expiring ids seq events signals meta limiter schedules workers groups
  Input:
    ARGV[1] batch: batch size
    ARGV[2] force: '1' to obliterate even with active jobs
  Output: removed
    jobs and schedules removed by this call; 0 once the queue is gone; -1 when refused (active
    jobs).
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local prefix, batch = KEYS[1], tonumber(ARGV[1])
if ARGV[2] ~= '1' and redis.call('ZCARD', KEYS[4]) > 0 then
  return -1
end
local removed = 0
for i = 2, 7 do
  if removed < batch then
    local ids = redis.call('ZRANGE', KEYS[i], 0, batch - removed - 1)
    for _, id in ipairs(ids) do
      redis.call('ZREM', KEYS[i], id)
      remove_job_keys(prefix, id)
    end
    removed = removed + #ids
  end
end
if removed < batch then
  removed = removed + drop_parked(prefix, KEYS[13], KEYS[17], KEYS[8], batch - removed)
end
if removed < batch then
  local keys = redis.call('ZRANGE', KEYS[15], 0, batch - removed - 1)
  for _, key in ipairs(keys) do
    redis.call('ZREM', KEYS[15], key)
    redis.call('DEL', prefix .. 'schedule:' .. key)
  end
  removed = removed + #keys
end
if removed == 0 then
  redis.call('DEL', KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[16],
    KEYS[17])
end
return removed
