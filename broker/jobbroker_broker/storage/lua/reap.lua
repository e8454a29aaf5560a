--[[
  Maintenance: end leases whose deadline passed, a bounded batch per call.
    - past the attempt timeout: the attempt fails with reason TIMEOUT (retried while attempts
      are left);
    - cancel requested: the job ends cancelled;
    - otherwise the job stalled: back to the front of waiting, or failed with reason STALLED once
      it stalled more than the max-stalled count.
  Keys: prefix active waiting delayed failed cancelled events seq signals meta
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
    ARGV[3] max_stalled: max stalled count (the queue's own setting, `mst` in meta, wins)
    ARGV[4] rand: random in [0, 1) for the backoff's jitter
  Output: {handled, next_due, now, stalled, failed, retried}
    leases ended, the next lease deadline in ms (-1 = none), Redis' time; then, for metrics,
    how many of them stalled, failed for good, or were retried.
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/attempt.lua

local k = {prefix = KEYS[1], active = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  failed = KEYS[5], events = KEYS[7], seq = KEYS[8]}
local maxlen = ARGV[1]
local max_stalled = tonumber(redis.call('HGET', KEYS[10], 'mst')) or tonumber(ARGV[3])
local now = now_ms()
local expired = redis.call('ZRANGE', k.active, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local stalled_n, failed_n, retried_n = 0, 0, 0
for _, id in ipairs(expired) do
  local jkey = job_key(k.prefix, id)
  local f = redis.call('HMGET', jkey, 'to', 'cr', 'sc', 'pri', 'fn', 'w', 'am', 'st')
  local timeout_at = tonumber(f[1]) or 0
  if f[8] ~= 'active' then
    redis.call('ZREM', k.active, id)
  elseif f[2] == '1' then
    signal(KEYS[9], 'cancelled', id, f[5], f[6])
    redis.call('ZREM', k.active, id)
    finish_cancelled(k.prefix, k.events, maxlen, KEYS[6], id, now)
  elseif timeout_at > 0 and timeout_at <= now then
    signal(KEYS[9], 'timeout', id, f[5], f[6])
    local tmo = redis.call('HGET', jkey, 'tmo')
    local state = fail_attempt(k, maxlen, id, now, 2, 'attempt timed out after ' .. tmo .. ' ms', '',
      '', false, tonumber(ARGV[4]))
    if state == 'failed' then
      failed_n = failed_n + 1
    else
      retried_n = retried_n + 1
    end
  else
    signal(KEYS[9], 'stalled', id, f[5], f[6])
    redis.call('ZREM', k.active, id)
    local stalled = redis.call('HINCRBY', jkey, 'sc', 1)
    stalled_n = stalled_n + 1
    local attempt = (tonumber(f[7]) or 0) + 1
    if stalled > max_stalled then
      failed_n = failed_n + 1
      emit(k.events, maxlen, 'stalled', id, {'s', 'failed', 'a', attempt, 'f', f[5], 'w', f[6] or ''})
      redis.call('HSET', jkey, 'am', attempt)
      finish_failed(k.prefix, k.events, maxlen, k.failed, id, now, 4,
        'job stalled more than ' .. max_stalled .. ' time(s)', '', '', attempt)
    else
      redis.call('HSET', jkey, 'st', 'waiting')
      redis.call('HDEL', jkey, 'le', 'to')
      redis.call('ZADD', k.waiting, front_score(f[4]), id)
      emit(k.events, maxlen, 'stalled', id, {'s', 'waiting', 'a', attempt, 'f', f[5], 'w', f[6] or ''})
    end
  end
end
return done({#expired, next_score(k.active), now, stalled_n, failed_n, retried_n})
