--[[
  Record a sighting of a worker in a queue (registry.py): its last-seen time and the queues it
  serves. Each write expires the whole hash one window later and drops stale entries from a
  random sample of three, so the hash stays small without anyone listing it.
  Keys: prefix workers
  Input:
    ARGV[1] worker: worker id
    ARGV[2] queues: the queues it serves (comma-separated)
    ARGV[3] merge: '1': add these queues to the stored ones instead of replacing them
    ARGV[4] window_ms: window ms
  Output: now
    Redis' time (ms), the last-seen time written.
]]
-- @include lib/clock.lua

local prefix, workers = KEYS[1], KEYS[2]
local now = now_ms()
local window = tonumber(ARGV[4])
local queues = ARGV[2]
if ARGV[3] == '1' then
  local old = redis.call('HGET', workers, ARGV[1])
  local stored = old and string.match(old, '^%d+|(.*)$') or ''
  if stored ~= '' and string.find(',' .. stored .. ',', ',' .. queues .. ',', 1, true) then
    queues = stored
  elseif stored ~= '' then
    queues = stored .. ',' .. queues
  end
end
redis.call('HSET', workers, ARGV[1], now .. '|' .. queues)
redis.call('PEXPIRE', workers, window)
local sample = redis.call('HRANDFIELD', workers, 3, 'WITHVALUES')
for i = 1, #sample, 2 do
  local seen = tonumber(string.match(sample[i + 1], '^(%d+)|'))
  if not seen or now - seen > window then
    redis.call('HDEL', workers, sample[i])
  end
end
return now
