-- Terminal transitions, shared by every script that ends a job.
-- Needs lib/base.lua.

-- Move a job into a terminal state and its finished set, emit `etype`, apply retention.
-- `hset`, optional, holds more job fields to set in the same HSET.
local function finish(prefix, events, maxlen, set_key, id, state, policy, now, etype, fields, hset)
  local jkey = job_key(prefix, id)
  if hset then
    redis.call('HSET', jkey, 'st', state, 'fa', now, unpack(hset))
  else
    redis.call('HSET', jkey, 'st', state, 'fa', now)
  end
  redis.call('HDEL', jkey, 'ra', 'le', 'to')
  redis.call('ZADD', set_key, now, id)
  local f = {'s', state}
  for i = 1, #fields do
    f[#f + 1] = fields[i]
  end
  emit(events, maxlen, etype, id, f)
  retain(prefix, set_key, id, policy, now)
end

-- End a job as cancelled (from any state but active-with-worker-alive).
local function finish_cancelled(prefix, events, maxlen, cancelled_key, id, now)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'rf', 'fn', 'w')
  finish(prefix, events, maxlen, cancelled_key, id, 'cancelled', f[1], now, 'cancelled',
    {'f', f[2] or '0', 'w', f[3] or ''})
end

-- End a job as failed for good: record the failure, emit failed and retries-exhausted.
-- `reason` is a FailureReason number; `attempt` the attempt that failed.
local function finish_failed(prefix, events, maxlen, failed_key, id, now, reason, msg, etype_, stack, attempt)
  local jkey = job_key(prefix, id)
  redis.call('HSET', jkey, 'fr', reason, 'fm', msg, 'fty', etype_, 'fsk', stack, 'fat', attempt)
  local f = redis.call('HMGET', jkey, 'rf', 'fn', 'w')
  local fields = {'a', attempt, 'fr', reason, 'fm', msg, 'fty', etype_, 'f', f[2] or '0', 'w', f[3] or ''}
  finish(prefix, events, maxlen, failed_key, id, 'failed', f[1], now, 'failed', fields)
  emit(events, maxlen, 'retries-exhausted', id, fields)
end
