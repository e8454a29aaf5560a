--[[
  Fail the current attempt of leased jobs: retried (delayed by backoff, or waiting) while
  attempts are left, else failed for good; cancelled when a Cancel arrived meanwhile.
  Keys: prefix active waiting delayed failed cancelled events seq
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] job_count: number of jobs N
    then per job:
      id: job id
      token: lease token
      message: error message
      error_type: error type
      stack: stack trace
      no_retry: '1' to fail for good whatever attempts are left
      rand: random in [0, 1) for the backoff's jitter
  Output: per job {reason, state, run_at, run_ms}
    reason '' when applied, else an ErrorReason name (check_lease); run_at is when a retry with
    backoff runs (state delayed), else 0; run_ms is how long the attempt ran (lease to now), 0
    when refused (for metrics).
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/attempt.lua

local k = {prefix = KEYS[1], active = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  failed = KEYS[5], events = KEYS[7], seq = KEYS[8]}
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * 7
  local id, token = ARGV[b], ARGV[b + 1]
  local jkey = job_key(k.prefix, id)
  local reason, st, f = check_lease(jkey, token, now, 'cr', 'sa')
  if reason then
    out[#out + 1] = reason
    out[#out + 1] = st
    out[#out + 1] = 0
    out[#out + 1] = 0
  elseif f[4] == '1' then
    redis.call('ZREM', k.active, id)
    redis.call('HSET', jkey, 'fm', ARGV[b + 2], 'fty', ARGV[b + 3], 'fsk', ARGV[b + 4])
    finish_cancelled(k.prefix, k.events, maxlen, KEYS[6], id, now)
    out[#out + 1] = ''
    out[#out + 1] = 'cancelled'
    out[#out + 1] = 0
    out[#out + 1] = now - (tonumber(f[5]) or now)
  else
    local ran = now - (tonumber(f[5]) or now)
    local state, run_at = fail_attempt(k, maxlen, id, now, 1, ARGV[b + 2], ARGV[b + 3],
      ARGV[b + 4], ARGV[b + 5] == '1', tonumber(ARGV[b + 6]))
    out[#out + 1] = ''
    out[#out + 1] = state
    out[#out + 1] = run_at
    out[#out + 1] = ran
  end
end
return done(out)
