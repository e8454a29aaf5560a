--[[
  Add jobs to a queue, all or none (Add is a batch of one).
  Keys: prefix ids seq waiting delayed expiring events meta
  Input:
    ARGV[1] events maxlen
    ARGV[2] number of jobs N
    then 17 values per job: custom id ('' = generate), name, data, data content type,
      priority, lifo ('1'/''), delay ms, max attempts, backoff type, backoff delay,
      backoff jitter, backoff max, timeout ms, lifespan ms, retain-on-complete, retain-on-fail,
      group (numbers '' or '0' when unset; retention and group '' when unset).
  Output: on success a flat list of {id, state, duplicate (0/1)} per job, then 1 when the queue
    was not registered yet (its meta hash has no `reg` field: new, or obliterated since) else 0;
    when a custom id names an existing job with another name or data, {'DUPLICATE', id} and
    nothing is written.
]]
-- @include lib/base.lua
-- @include lib/add_job.lua

local prefix, ids, seq, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, expiring, events, meta = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local k = {prefix = prefix, seq = seq, waiting = waiting, delayed = delayed, expiring = expiring,
  events = events}
local maxlen = ARGV[1]
local n = tonumber(ARGV[2])

-- Phase 1: resolve custom ids so that nothing is written if any of them conflicts.
local seen = {}
local dup = {}
for i = 0, n - 1 do
  local b = 3 + i * ADD_WIDTH
  local id = ARGV[b]
  if id ~= '' then
    local name, data, dct = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local prev = seen[id]
    if prev then
      if prev[1] ~= name or prev[2] ~= data or prev[3] ~= dct then
        return done({'DUPLICATE', id})
      end
      dup[i] = true
    else
      local sname, sdata, sdct, st = existing_job(prefix, id)
      if st then
        if sname ~= name or sdata ~= data or sdct ~= dct then
          return done({'DUPLICATE', id})
        end
        dup[i] = st
      end
      seen[id] = {name, data, dct}
    end
  end
end

-- Phase 2: write.
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * ADD_WIDTH
  local id = ARGV[b]
  if dup[i] then
    local st = dup[i] == true and redis.call('HGET', job_key(prefix, id), 'st') or dup[i]
    emit(events, maxlen, 'duplicated', id, {})
    out[#out + 1] = id
    out[#out + 1] = st
    out[#out + 1] = 1
  else
    if id == '' then
      id = tostring(redis.call('INCR', ids))
    end
    out[#out + 1] = id
    out[#out + 1] = write_job(k, maxlen, id, ARGV, b + 1, now)
    out[#out + 1] = 0
  end
end
out[#out + 1] = redis.call('HSETNX', meta, 'reg', 1)
return done(out)
