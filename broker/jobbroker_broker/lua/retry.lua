--[[
  Retry a failed or cancelled job: back to waiting with a fresh set of attempts.
  Keys: prefix waiting failed cancelled expiring events seq
  Input:
    ARGV[1] events maxlen
    ARGV[2] job id
  Output: {'', 'waiting'} or {error reason, state}: NOT_FOUND, or NOT_RETRYABLE.
]]
-- @include lib/base.lua

local prefix, id = KEYS[1], ARGV[2]
local jkey = job_key(prefix, id)
local f = redis.call('HMGET', jkey, 'st', 'lsp')
if not f[1] then
  return done({'NOT_FOUND', ''})
end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then
  return done({'NOT_RETRYABLE', f[1]})
end
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('HDEL', jkey, 'fa', 'cr', 'crr', 'sa', 'res', 'rct', 'fr', 'fm', 'fty', 'fsk', 'fat', 'w')
redis.call('HSET', jkey, 'am', 0, 'sc', 0)
local lifespan = tonumber(f[2]) or 0
if lifespan > 0 then
  local now = now_ms()
  redis.call('ZADD', KEYS[5], now + lifespan, id)
  redis.call('HSET', jkey, 'ct', now)
end
make_waiting(prefix, KEYS[2], KEYS[7], KEYS[6], ARGV[1], id)
return done({'', 'waiting'})
