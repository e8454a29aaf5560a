-- Writing one new job: shared by add.lua and fire_schedule.lua. Include after lib/base.lua.
--
-- A job's options come by name: `n` values from v[b], job hash fields and their values in
-- pairs (pri, lifo, dly, atm, bt, bd, bj, bx, tmo, lsp, rc, rf, grp, tc), unset ones left out.

-- Whether two content types name the same kind of payload: each is kept as sent, but '' and
-- 'application/json' both mean JSON, so re-adding a job with the other spelling is a duplicate.
local function same_type(a, b)
  return a == b or ((a == '' or a == 'application/json') and (b == '' or b == 'application/json'))
end

-- Whether an add of (name, data, dct) repeats the job stored as (sname, sdata, sdct).
local function same_job(sname, sdata, sdct, name, data, dct)
  return sname == name and sdata == data and same_type(sdct, dct)
end

-- The stored name, data, content type and state of job `id` (state nil when there is none).
local function existing_job(prefix, id)
  local f = redis.call('HMGET', job_key(prefix, id), 'name', 'data', 'dct', 'st')
  return f[1], f[2], f[3] or '', f[4]
end

-- The delay option (dly) among the `n` option values from v[b], 0 when unset.
local function option_delay(v, b, n)
  for j = b, b + n - 2, 2 do
    if v[j] == 'dly' then
      return tonumber(v[j + 1]) or 0
    end
  end
  return 0
end

-- Write job `id` (resolved, non-empty) with its options (`n` values from v[b]), and emit its
-- 'added' event. `k` holds the queue keys: prefix, seq, waiting, delayed, expiring, events.
-- `batch`, optional, collects the waiting set's entries for one ZADD by the caller:
-- {seq = the next sequence number reserved, waiting = flat score, id list}.
-- Returns the job's state.
local function write_job(k, maxlen, id, name, data, dct, v, b, n, now, batch)
  local fields = {'name', name, 'data', data, 'ct', now}
  if dct ~= '' then fields[#fields + 1] = 'dct'; fields[#fields + 1] = dct end
  local pri, lifo, delay, lifespan = nil, nil, 0, 0
  for j = b, b + n - 2, 2 do
    local field, value = v[j], v[j + 1]
    fields[#fields + 1] = field
    fields[#fields + 1] = value
    if field == 'pri' then
      pri = value
    elseif field == 'lifo' then
      lifo = value
    elseif field == 'dly' then
      delay = tonumber(value) or 0
    elseif field == 'lsp' then
      lifespan = tonumber(value) or 0
    end
  end
  if lifespan > 0 then
    redis.call('ZADD', k.expiring, now + lifespan, id)
  end
  local state, run_at
  if delay > 0 then
    run_at = now + delay
    state = 'delayed'
    fields[#fields + 1] = 'ra'
    fields[#fields + 1] = run_at
    redis.call('ZADD', k.delayed, run_at, id)
  else
    state = 'waiting'
    if batch then
      local w = batch.waiting
      w[#w + 1] = wait_score(k.seq, pri, lifo, batch.seq)
      w[#w + 1] = id
      batch.seq = batch.seq + 1
    else
      redis.call('ZADD', k.waiting, wait_score(k.seq, pri, lifo), id)
    end
  end
  fields[#fields + 1] = 'st'
  fields[#fields + 1] = state
  redis.call('HSET', job_key(k.prefix, id), unpack(fields))
  if run_at then
    emit_fields(k.events, maxlen, 'added', id, 's', state, 'n', name, 'ra', run_at)
  else
    emit_fields(k.events, maxlen, 'added', id, 's', state, 'n', name)
  end
  return state
end
