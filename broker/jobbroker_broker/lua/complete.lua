--[[
  Complete leased jobs: active -> completed (or cancelled when a Cancel arrived meanwhile).
  Keys: prefix active completed cancelled events
  Input:
    ARGV[1] events maxlen
    ARGV[2] number of jobs N
    then per job: id, token, result, result content type
  Output: a flat list of {reason ('' = applied), state, run ms} per job; run ms is how long
    the attempt ran (lease to now), 0 when refused (for metrics).
]]
-- @include lib/base.lua
-- @include lib/finish.lua

local prefix, active, completed, cancelled, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}
local FIELDS = {'cr', 'am', 'rc', 'fn', 'w', 'sa'}
for i = 0, n - 1 do
  local b = 3 + i * 4
  local id, token, result, rct = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local jkey = job_key(prefix, id)
  local reason, st, f = check_lease(jkey, token, now, FIELDS)
  if reason then
    out[#out + 1] = reason
    out[#out + 1] = st
    out[#out + 1] = 0
  else
    local attempt = (tonumber(f[5]) or 0) + 1
    redis.call('ZREM', active, id)
    local hset = {'am', attempt, 'res', result}
    if rct ~= '' then
      hset[5] = 'rct'
      hset[6] = rct
    end
    if f[4] == '1' then
      redis.call('HSET', jkey, unpack(hset))
      finish_cancelled(prefix, events, maxlen, cancelled, id, now)
      out[#out + 1] = ''
      out[#out + 1] = 'cancelled'
      out[#out + 1] = now - (tonumber(f[9]) or now)
    else
      finish(prefix, events, maxlen, completed, id, 'completed', f[6], now, 'completed',
        {'a', attempt, 'r', result, 'rct', rct, 'f', f[7], 'w', f[8]}, hset)
      out[#out + 1] = ''
      out[#out + 1] = 'completed'
      out[#out + 1] = now - (tonumber(f[9]) or now)
    end
  end
end
return done(out)
