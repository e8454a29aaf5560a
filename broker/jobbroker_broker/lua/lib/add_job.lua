-- Writing one new job: shared by add.lua and fire_schedule.lua. Include after lib/base.lua.
--
-- A job is given as the add script's 17 values in a list `v` starting at index `b`: id, name,
-- data, data content type, then the 13 option values (priority, lifo, delay ms, max attempts,
-- backoff type, delay, jitter, max, timeout ms, lifespan ms, retain-on-complete,
-- retain-on-fail, group; '' or '0' when unset).

-- Job fields of the option values, in order after id, name, data and content type.
local ADD_OPTIONAL = {'pri', 'lifo', 'dly', 'atm', 'bt', 'bd', 'bj', 'bx', 'tmo', 'lsp', 'rc', 'rf',
  'grp'}
local ADD_WIDTH = 17

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

-- Write job `id` (resolved, non-empty) from the values after the id, which start at v[b] (the
-- name), and emit its 'added' event. `k` holds the queue keys: prefix, seq, waiting, delayed,
-- expiring, events. `batch`, optional, collects the waiting set's entries for one ZADD by the
-- caller: {seq = the next sequence number reserved, waiting = flat score, id list}.
-- Returns the job's state.
local function write_job(k, maxlen, id, v, b, now, batch)
  local name, data, dct = v[b], v[b + 1], v[b + 2]
  local pri, lifo, delay = v[b + 3], v[b + 4], tonumber(v[b + 5]) or 0
  local fields = {'name', name, 'data', data, 'ct', now}
  if dct ~= '' then fields[#fields + 1] = 'dct'; fields[#fields + 1] = dct end
  for j = 1, #ADD_OPTIONAL do
    local value = v[b + 2 + j]
    if value ~= '' and value ~= '0' then
      fields[#fields + 1] = ADD_OPTIONAL[j]
      fields[#fields + 1] = value
    end
  end
  local lifespan = tonumber(v[b + 12]) or 0
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
