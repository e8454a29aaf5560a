--[[
  List a queue's live workers (registry.py) with the number of active jobs each holds, and
  delete stale entries (bounded) on the way.
  Keys: prefix workers active
  Input:
    ARGV[1] window_ms: workers seen longer ago than this are stale
    ARGV[2] max_active: active jobs to read at most (those whose leases expire first)
    ARGV[3] max_prune: stale entries to delete at most
  Output: per worker {worker, last_seen, queues, active_jobs}
    live workers only, in no particular order; last_seen in ms, queues comma-separated.
]]
-- @include lib/clock.lua

local prefix, workers, active = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
local window, prune = tonumber(ARGV[1]), tonumber(ARGV[3])
local entries = redis.call('HGETALL', workers)
local live, order = {}, {}
for i = 1, #entries, 2 do
  local seen, queues = string.match(entries[i + 1], '^(%d+)|(.*)$')
  seen = tonumber(seen)
  if seen and now - seen <= window then
    live[entries[i]] = {seen, queues, 0}
    order[#order + 1] = entries[i]
  elseif prune > 0 then
    redis.call('HDEL', workers, entries[i])
    prune = prune - 1
  end
end
if #order > 0 then
  -- A job's own key hangs off the queue prefix, like in every other script.
  for _, id in ipairs(redis.call('ZRANGE', active, 0, tonumber(ARGV[2]) - 1)) do
    local worker = redis.call('HGET', prefix .. 'job:' .. id, 'w')
    local entry = worker and live[worker]
    if entry then
      entry[3] = entry[3] + 1
    end
  end
end
local out = {}
for _, id in ipairs(order) do
  local entry = live[id]
  out[#out + 1] = id
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2]
  out[#out + 1] = entry[3]
end
return out
