--[[
  Give leased jobs back without spending an attempt: active -> waiting (front of its priority)
  or delayed; cancelled when a Cancel arrived meanwhile.
  Keys: prefix active waiting delayed cancelled events
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] job_count: number of jobs N
    then per job:
      id: job id
      token: lease token
      delay_ms: how long to keep it delayed (0: back to waiting)
  Output: per job {reason, state}
    reason '' when applied, else an ErrorReason name (check_lease).
]]
-- @include lib/base.lua
-- @include lib/finish.lua

local prefix, active, waiting, delayed, cancelled, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 3
  local id, token, delay = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]) or 0
  local jkey = job_key(prefix, id)
  local reason, st, f = check_lease(jkey, token, now, 'cr', 'pri', 'fn', 'w')
  if reason then
    out[#out + 1] = reason
    out[#out + 1] = st
  else
    redis.call('ZREM', active, id)
    if f[4] == '1' then
      finish_cancelled(prefix, events, maxlen, cancelled, id, now)
      st = 'cancelled'
    else
      redis.call('HDEL', jkey, 'le', 'to')
      local ev = {'f', f[6], 'w', f[7]}
      if delay > 0 then
        st = 'delayed'
        redis.call('HSET', jkey, 'st', st, 'ra', now + delay)
        redis.call('ZADD', delayed, now + delay, id)
        ev[#ev + 1] = 'ra'
        ev[#ev + 1] = now + delay
      else
        st = 'waiting'
        redis.call('HSET', jkey, 'st', st)
        redis.call('ZADD', waiting, front_score(f[5]), id)
      end
      ev[#ev + 1] = 's'
      ev[#ev + 1] = st
      emit(events, maxlen, 'released', id, ev)
    end
    out[#out + 1] = ''
    out[#out + 1] = st
  end
end
return done(out)
