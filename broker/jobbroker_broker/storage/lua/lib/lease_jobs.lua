-- Leasing: waiting -> active, the loop of lease.lua (and of complete_lease.lua after its
-- completions). Needs lib/base.lua, lib/finish.lua and lib/groups.lua.

-- Lease up to `max_jobs` waiting jobs of the queue whose keys `k` names (prefix waiting active
-- expiring failed events seq meta limiter groups) to `worker` for `lease_ms_s` ms (a string,
-- as ARGV gives it), at `now`. Returns lease.lua's reply (see its header): a row per job, then
-- what held leasing back.
local function lease_jobs(k, maxlen, max_jobs, worker, lease_ms_s, token_suffix, now)
  local prefix, waiting, active, expiring, failed, events = k.prefix, k.waiting, k.active,
    k.expiring, k.failed, k.events
  local lease_ms = tonumber(lease_ms_s)
  -- Numbers given to redis.call are formatted on each call: format the ones shared by every job
  -- once.
  local now_s = tostring(now)
  local lease_deadline = now + lease_ms
  local lease_deadline_s = tostring(lease_deadline)
  local out = {}
  local leased = 0
  local took = false -- whether this call found waiting jobs (to tell when it emptied the set)
  -- (deadline, id) pairs: the active set gets one ZADD per call, not one per job.
  local entered = {}

  local meta = redis.call('HMGET', k.meta, 'paused', 'conc', 'rlm', 'rld', 'glm', 'gld')
  local group_max, group_window = tonumber(meta[5]) or 0, tonumber(meta[6]) or 0
  if meta[1] == '1' then
    out[1] = -1
    return out
  end
  local held = 0
  local concurrency = tonumber(meta[2]) or 0
  if concurrency > 0 then
    local room = concurrency - redis.call('ZCARD', active)
    if room <= 0 then
      out[1] = -2
      return out
    end
    if room <= max_jobs then
      max_jobs, held = room, -2
    end
  end
  local rate_max = tonumber(meta[3]) or 0
  if rate_max > 0 then
    local room = rate_max - (tonumber(redis.call('GET', k.limiter)) or 0)
    if room <= 0 then
      local ttl = redis.call('PTTL', k.limiter)
      if ttl > 0 then
        out[1] = ttl
        return out
      end
      -- A counter without expiry cannot be: start a new window.
      redis.call('DEL', k.limiter)
      room = rate_max
    end
    if room <= max_jobs then
      max_jobs, held = room, tonumber(meta[4]) or 1
    end
  end
  -- Expired jobs are failed on the way; bound how many one call may skip.
  local budget = max_jobs + 100

  -- Whether the job may start under its group's limit (counting it); if not, it is parked.
  local function group_allows(group, score, id)
    local counter = group_counter(prefix, group)
    local used = tonumber(redis.call('GET', counter)) or 0
    if used >= group_max then
      local ttl = redis.call('PTTL', counter)
      if ttl <= 0 then
        ttl = group_window
      end
      redis.call('ZADD', parked_key(prefix, group), score, id)
      redis.call('ZADD', k.groups, now + ttl, group)
      redis.call('HINCRBY', k.meta, 'parked', 1)
      return false
    end
    if redis.call('INCR', counter) == 1 then
      redis.call('PEXPIRE', counter, group_window)
    end
    return true
  end

  while leased < max_jobs and budget > 0 do
    local popped = redis.call('ZPOPMIN', waiting, max_jobs - leased)
    if #popped == 0 then
      break
    end
    took = true
    for i = 1, #popped, 2 do
      budget = budget - 1
      local id = popped[i]
      local jkey = job_key(prefix, id)
      -- One HMGET for everything the lease needs (false for an absent field).
      local name, data, dct, made, max_attempts, timeout, lifespan, created, pp, pv, pvt, st,
        started, last_fence, group, delay, stalled, tc = unpack(redis.call('HMGET', jkey, 'name',
        'data', 'dct', 'am', 'atm', 'tmo', 'lsp', 'ct', 'pp', 'pv', 'pvt', 'st', 'sa', 'fn', 'grp',
        'dly', 'sc', 'tc'))
      if st then
        lifespan = tonumber(lifespan) or 0
        -- Lifespan bounds the start only: a job that started once is never expired after.
        if lifespan > 0 and not started and tonumber(created) + lifespan <= now then
          redis.call('ZREM', expiring, id)
          finish_failed(prefix, events, maxlen, failed, id, now, 3,
            'job did not start within its lifespan of ' .. lifespan .. ' ms', '', '',
            tonumber(made) or 0)
        elseif group and group_max > 0 and not group_allows(group, popped[i + 1], id) then
          -- parked until its group's window ends
        else
          local fence = (tonumber(last_fence) or 0) + 1
          local fence_s = tostring(fence) -- used three times: formatted once
          local token = fence_s .. '-' .. token_suffix .. leased
          local deadline, deadline_s = lease_deadline, lease_deadline_s
          timeout = tonumber(timeout) or 0
          local timeout_at = 0
          if timeout > 0 then
            timeout_at = now + timeout
            if timeout_at < deadline then
              deadline, deadline_s = timeout_at, tostring(timeout_at)
            end
          end
          -- Arguments given directly, not through a table and unpack(): the hot path notices.
          redis.call('HSET', jkey, 'st', 'active', 'sa', now_s, 'w', worker, 'tok', token,
            'lms', lease_ms_s, 'fn', fence_s, 'le', deadline_s)
          if timeout > 0 then
            redis.call('HSET', jkey, 'to', timeout_at)
          end
          entered[#entered + 1] = deadline_s
          entered[#entered + 1] = id
          if lifespan > 0 then
            redis.call('ZREM', expiring, id)
          end
          local attempt = (tonumber(made) or 0) + 1
          emit_fields(events, maxlen, 'active', id, 's', 'active', 'a', attempt, 'w', worker,
            'f', fence_s)
          leased = leased + 1
          -- The reply row: contracts/leases.py's Leased, in its order.
          local n = #out
          out[n + 1] = id
          out[n + 2] = name
          out[n + 3] = data
          out[n + 4] = dct or ''
          out[n + 5] = attempt
          out[n + 6] = tonumber(max_attempts) or 1
          out[n + 7] = token
          out[n + 8] = fence
          out[n + 9] = deadline
          out[n + 10] = timeout_at
          out[n + 11] = pp or ''
          out[n + 12] = pv or ''
          out[n + 13] = pvt or ''
          -- A retried job (restart) has `sc` set; a started one `sa`.
          out[n + 14] = (started or stalled) and -1
            or math.max(0, now - tonumber(created) - (tonumber(delay) or 0))
          out[n + 15] = tc or ''
        end
      end
    end
  end
  call_many('ZADD', active, entered)
  if redis.call('ZCARD', waiting) == 0 then
    -- An empty waiting set restarts the FIFO sequence, keeping scores far from 2^53.
    redis.call('DEL', k.seq)
    if took and (tonumber(redis.call('HGET', k.meta, 'parked')) or 0) == 0 then
      emit_fields(events, maxlen, 'drained', '')
    end
  end
  if rate_max > 0 and leased > 0 then
    if redis.call('INCRBY', k.limiter, leased) == leased then
      redis.call('PEXPIRE', k.limiter, tonumber(meta[4]))
    end
    if held > 0 then
      held = math.max(redis.call('PTTL', k.limiter), 1)
    end
  end
  if leased < max_jobs then
    held = 0 -- the queue ran dry before any limit bit
  end
  out[#out + 1] = held
  return out
end
