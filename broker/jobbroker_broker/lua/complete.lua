--[[
  Complete leased jobs: active -> completed (or cancelled when a Cancel arrived meanwhile).
  Keys: prefix active completed cancelled events
  Input:
    ARGV[1] events maxlen
    ARGV[2] number of jobs N
    then per job: id, token, result, result content type
  Output: a flat list of {reason ('' = applied), state} per job.
]]
-- @include lib/base.lua
-- @include lib/finish.lua

local prefix, active, completed, cancelled, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 4
  local id, token, result, rct = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local jkey = job_key(prefix, id)
  local reason, st = check_lease(jkey, token, now)
  if reason then
    out[#out + 1] = reason
    out[#out + 1] = st
  else
    local f = redis.call('HMGET', jkey, 'cr', 'am', 'rc', 'fn', 'w')
    local attempt = (tonumber(f[2]) or 0) + 1
    redis.call('ZREM', active, id)
    redis.call('HSET', jkey, 'am', attempt, 'res', result)
    if rct ~= '' then
      redis.call('HSET', jkey, 'rct', rct)
    end
    if f[1] == '1' then
      finish_cancelled(prefix, events, maxlen, cancelled, id, now)
      out[#out + 1] = ''
      out[#out + 1] = 'cancelled'
    else
      finish(prefix, events, maxlen, completed, id, 'completed', f[3], now, 'completed',
        {'a', attempt, 'r', result, 'rct', rct, 'f', f[4], 'w', f[5]})
      out[#out + 1] = ''
      out[#out + 1] = 'completed'
    end
  end
end
return done(out)
