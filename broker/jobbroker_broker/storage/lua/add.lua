--[[
  Add jobs to a queue: all or none (AddBulk), or each on its own (single Adds the broker
  gathered into one call).
  Keys: prefix ids seq waiting delayed expiring events meta
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] job_count: number of jobs N
    ARGV[3] each: '1': each job on its own (a conflicting custom id fails that job only); '':
      all or none
    then per job:
      id: custom id ('' = generate)
      name: job name
      data: payload body
      data_type: payload content type ('' = JSON)
      options...: the options set, by name: job hash fields and their values in pairs (pri,
        lifo, dly, atm, bt, bd, bj, bx, tmo, lsp, rc, rf, grp, tc; see contracts/hashes.py),
        unset ones left out
  Output: per job {id, state, duplicate} then {registered}
    duplicate is 1 when a job with that custom id, name and data was there already (left as
    it is); registered is 1 when the queue was not registered yet (its meta hash has no `reg`
    field: new, or obliterated since), else 0. A custom id that names an existing job (or an
    earlier job of the call) with another name or data is a conflict, state JOB_ID_CONFLICT:
    all or none, the reply is that job's row alone (then 0) and nothing is written; each on
    its own, that job is not written.
]]
-- @include lib/base.lua
-- @include lib/add_job.lua

local prefix, ids, seq, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, expiring, events, meta = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local k = {prefix = prefix, seq = seq, waiting = waiting, delayed = delayed, expiring = expiring,
  events = events}
local maxlen = ARGV[1]
local n = tonumber(ARGV[2])
local each = ARGV[3] == '1'

-- Phase 1: find where each job's values start (its options make their number vary), and
-- resolve custom ids so that nothing is written if any of them conflicts (all or none), or so
-- that a conflicting job is skipped (each on its own). Count what phase 2 needs.
local starts = {}
local seen = {}
local dup = {}
local generated, to_wait = 0, 0
local b = 4
for i = 0, n - 1 do
  starts[i] = b
  local id, name, data, dct = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local nopts = tonumber(ARGV[b + 4])
  local conflict = false
  if id ~= '' then
    local prev = seen[id]
    if prev then
      if not same_job(prev[1], prev[2], prev[3], name, data, dct) then
        conflict = true
      else
        dup[i] = true
      end
    else
      local sname, sdata, sdct, st = existing_job(prefix, id)
      if st then
        if not same_job(sname, sdata, sdct, name, data, dct) then
          conflict = true
        else
          dup[i] = st
        end
      end
      if not conflict then
        seen[id] = {name, data, dct}
      end
    end
  else
    generated = generated + 1
  end
  if conflict then
    if not each then
      return done({id, 'JOB_ID_CONFLICT', 0, 0})
    end
    dup[i] = 'JOB_ID_CONFLICT'
  elseif not dup[i] and option_delay(ARGV, b + 5, nopts) <= 0 then
    to_wait = to_wait + 1
  end
  b = b + 5 + nopts
end

-- Phase 2: write. Generated ids and waiting-set sequence numbers are reserved for the whole
-- call at once, and the waiting set gets one ZADD: fewer redis.calls per job.
local now = now_ms()
local out = {}
local next_id = 0
if generated > 0 then
  next_id = redis.call('INCRBY', ids, generated) - generated + 1
end
local batch = {waiting = {}, seq = 0}
if to_wait > 0 then
  batch.seq = redis.call('INCRBY', seq, to_wait) - to_wait + 1
end
for i = 0, n - 1 do
  b = starts[i]
  local id = ARGV[b]
  local prior = dup[i]
  if prior == 'JOB_ID_CONFLICT' then
    out[#out + 1] = id
    out[#out + 1] = prior
    out[#out + 1] = 0
  elseif prior then
    local st = prior == true and redis.call('HGET', job_key(prefix, id), 'st') or prior
    emit(events, maxlen, 'duplicated', id, {})
    out[#out + 1] = id
    out[#out + 1] = st
    out[#out + 1] = 1
  else
    if id == '' then
      id = tostring(next_id)
      next_id = next_id + 1
    end
    out[#out + 1] = id
    out[#out + 1] = write_job(k, maxlen, id, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV, b + 5,
      tonumber(ARGV[b + 4]), now, batch)
    out[#out + 1] = 0
  end
end
call_many('ZADD', waiting, batch.waiting)
out[#out + 1] = redis.call('HSETNX', meta, 'reg', 1)
return done(out)
