--[[
  Renew leases, record progress and append log lines (the worker stream's updates).
  Keys: prefix active events
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] update_count: number of updates N
    ARGV[3] max_logs: most log lines kept per job
    then per update:
      id: job id
      token: lease token
      lease_ms: the renewal's duration ('0' = the lease's last one)
      has_percent: '1' when the update has a percent, else ''
      percent: progress percent
      has_value: '1' when the update has a progress value, else ''
      value: progress value
      value_type: progress value content type
      log_lines...: log lines to append
  Output: per update {reason, value}
    reason '' and the lease's new expiry (ms) when applied; else an ErrorReason name
    (check_lease) and the job's state.
]]
-- @include lib/base.lua

local prefix, active, events = KEYS[1], KEYS[2], KEYS[3]
local maxlen, n, max_logs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local out = {}
local b = 4
for _ = 1, n do
  local id, token, lease_ms = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2])
  local has_pct, pct, has_val, val, vct = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local nlogs = tonumber(ARGV[b + 8])
  local jkey = job_key(prefix, id)
  local reason, st, f = check_lease(jkey, token, now, 'lms', 'to', 'fn', 'am')
  if reason then
    out[#out + 1] = reason
    out[#out + 1] = st
  else
    if lease_ms == 0 then
      lease_ms = tonumber(f[4])
    end
    local deadline = now + lease_ms
    local timeout_at = tonumber(f[5]) or 0
    if timeout_at > 0 and timeout_at < deadline then
      deadline = timeout_at
    end
    redis.call('HSET', jkey, 'le', deadline, 'lms', lease_ms)
    redis.call('ZADD', active, deadline, id)
    if has_pct == '1' or has_val == '1' then
      local ev = {'a', (tonumber(f[7]) or 0) + 1, 'f', f[6]}
      if has_pct == '1' then
        redis.call('HSET', jkey, 'pp', pct)
        ev[#ev + 1] = 'pp'
        ev[#ev + 1] = pct
      end
      if has_val == '1' then
        redis.call('HSET', jkey, 'pv', val, 'pvt', vct)
        ev[#ev + 1] = 'pv'
        ev[#ev + 1] = val
        ev[#ev + 1] = 'pvt'
        ev[#ev + 1] = vct
      end
      emit(events, maxlen, 'progress', id, ev)
    end
    if nlogs > 0 then
      local lkey = logs_key(prefix, id)
      local args = {'RPUSH', lkey}
      for j = 1, nlogs do
        args[#args + 1] = ARGV[b + 8 + j]
      end
      if redis.call(unpack(args)) > max_logs then
        redis.call('LTRIM', lkey, -max_logs, -1)
      end
    end
    out[#out + 1] = ''
    out[#out + 1] = deadline
  end
  b = b + 9 + nlogs
end
return done(out)
