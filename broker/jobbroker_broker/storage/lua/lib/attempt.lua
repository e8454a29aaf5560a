-- The end of a failed attempt: retry with backoff while attempts are left, else fail for good.
-- Needs lib/base.lua and lib/finish.lua.

-- Milliseconds to wait before retry number `n` (1-based); `rand` in [0, 1) drives jitter.
local function backoff_delay(bt, bd, bj, bx, n, rand)
  local base = tonumber(bd) or 0
  local delay = 0
  if bt == '1' then
    delay = base
  elseif bt == '2' then
    delay = base * (2 ^ (n - 1))
  end
  local cap = tonumber(bx) or 0
  if cap > 0 and delay > cap then
    delay = cap
  end
  local jitter = tonumber(bj) or 0
  if jitter > 0 then
    delay = delay * (1 - jitter * rand)
  end
  return math.floor(delay)
end

-- Fail the current attempt of an active job. Returns the new state and, for delayed, the run-at.
-- keys: {prefix, active, waiting, delayed, failed, events, seq}
local function fail_attempt(k, maxlen, id, now, reason, msg, etype_, stack, no_retry, rand)
  local prefix = k.prefix
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'am', 'atm', 'bt', 'bd', 'bj', 'bx', 'pri', 'lifo', 'fn', 'w')
  local attempt = (tonumber(f[1]) or 0) + 1
  local max_attempts = tonumber(f[2]) or 1
  redis.call('ZREM', k.active, id)
  redis.call('HSET', jkey, 'am', attempt)
  if no_retry or attempt >= max_attempts then
    finish_failed(prefix, k.events, maxlen, k.failed, id, now, reason, msg, etype_, stack, attempt)
    return 'failed', 0
  end
  redis.call('HSET', jkey, 'fr', reason, 'fm', msg, 'fty', etype_, 'fsk', stack, 'fat', attempt)
  redis.call('HDEL', jkey, 'le', 'to')
  local delay = backoff_delay(f[3], f[4], f[5], f[6], attempt, rand)
  local common = {'a', attempt, 'fr', reason, 'fm', msg, 'fty', etype_, 'f', f[9] or '0', 'w', f[10] or ''}
  if delay > 0 then
    local run_at = now + delay
    redis.call('HSET', jkey, 'st', 'delayed', 'ra', run_at)
    redis.call('ZADD', k.delayed, run_at, id)
    local fields = {'s', 'delayed', 'ra', run_at}
    for i = 1, #common do fields[#fields + 1] = common[i] end
    emit(k.events, maxlen, 'failed', id, fields)
    emit(k.events, maxlen, 'delayed', id, {'s', 'delayed', 'ra', run_at})
    return 'delayed', run_at
  end
  redis.call('HSET', jkey, 'st', 'waiting')
  redis.call('ZADD', k.waiting, wait_score(k.seq, f[7], f[8]), id)
  local fields = {'s', 'waiting'}
  for i = 1, #common do fields[#fields + 1] = common[i] end
  emit(k.events, maxlen, 'failed', id, fields)
  emit(k.events, maxlen, 'waiting', id, {'s', 'waiting'})
  return 'waiting', 0
end
