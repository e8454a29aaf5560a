-- Completing: active -> completed, the loop of complete.lua (and of complete_lease.lua before
-- its leases). Needs lib/base.lua and lib/finish.lua.

-- Complete the `n` jobs whose items (id, token, result, result_type) start at ARGV[first_item]
-- in the queue whose keys `k` names (prefix active completed cancelled events), at `now`.
-- Returns complete.lua's reply (see its header): a row per job.
local function complete_jobs(k, maxlen, n, first_item, now)
  local prefix, active, completed, cancelled, events = k.prefix, k.active, k.completed,
    k.cancelled, k.events
  local now_s = tostring(now) -- formatted once, not by every redis.call that takes it
  local out = {}
  -- The sorted sets are updated once per call (ZREM of every job applied, ZADD of every job
  -- completed without a retention policy), not once per job. A job with a policy joins its set
  -- at once, after the batch so far, so retention sees the jobs finished before it.
  local ended = {}
  local finished = {}
  local function flush_finished()
    call_many('ZADD', completed, finished)
    finished = {}
  end
  for i = 0, n - 1 do
    local b = first_item + i * 4
    local id, token, result, rct = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local jkey = job_key(prefix, id)
    local reason, st, f = check_lease(jkey, token, now, 'cr', 'am', 'rc', 'fn', 'w', 'sa')
    if reason then
      out[#out + 1] = reason
      out[#out + 1] = st
      out[#out + 1] = 0
    else
      local attempt = tostring((tonumber(f[5]) or 0) + 1) -- formatted once, used twice
      ended[#ended + 1] = id
      if f[4] == '1' then
        local hset = {'am', attempt, 'res', result}
        if rct ~= '' then
          hset[5] = 'rct'
          hset[6] = rct
        end
        redis.call('HSET', jkey, unpack(hset))
        finish_cancelled(prefix, events, maxlen, cancelled, id, now)
        st = 'cancelled'
      else
        -- Removed on complete (policy "1,..."): the job's keys go at once, and it never enters
        -- the completed set (what retain() would take out again); the event carries its result.
        local removed = f[6] and string.sub(f[6], 1, 2) == '1,'
        if removed then
          remove_job_keys(prefix, id)
        elseif rct ~= '' then
          -- The lease fields (le, to) stay: saving their HDEL is a redis.call per job.
          redis.call('HSET', jkey, 'st', 'completed', 'fa', now_s, 'am', attempt, 'res', result,
            'rct', rct)
        else
          redis.call('HSET', jkey, 'st', 'completed', 'fa', now_s, 'am', attempt, 'res', result)
        end
        emit_fields(events, maxlen, 'completed', id, 's', 'completed', 'a', attempt, 'r', result,
          'rct', rct, 'f', f[7], 'w', f[8])
        if removed then
          -- gone already
        elseif f[6] then
          flush_finished()
          redis.call('ZADD', completed, now, id)
          retain(prefix, completed, id, f[6], now)
        else
          finished[#finished + 1] = now_s
          finished[#finished + 1] = id
        end
        st = 'completed'
      end
      out[#out + 1] = ''
      out[#out + 1] = st
      out[#out + 1] = now - (tonumber(f[9]) or now)
    end
  end
  flush_finished()
  call_many('ZREM', active, ended)
  return out
end
