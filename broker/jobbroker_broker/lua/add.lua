--[[
  Add jobs to a queue, all or none (Add is a batch of one).
  Keys: prefix ids seq waiting delayed expiring events
  Input:
    ARGV[1] events maxlen
    ARGV[2] number of jobs N
    then 16 values per job: custom id ('' = generate), name, data, data content type,
      priority, lifo ('1'/''), delay ms, max attempts, backoff type, backoff delay,
      backoff jitter, backoff max, timeout ms, lifespan ms, retain-on-complete, retain-on-fail
      (numbers '' or '0' when unset; retention '' when unset).
  Output: on success a flat list of {id, state, duplicate (0/1)} per job; when a custom id names
    an existing job with another name or data, {'DUPLICATE', id} and nothing is written.
]]
-- @include lib/base.lua

local prefix, events = KEYS[1], KEYS[7]
local maxlen = ARGV[1]
local n = tonumber(ARGV[2])
local WIDTH = 16
-- Job fields of the option values, in ARGV order after id, name, data and content type.
local OPTIONAL = {'pri', 'lifo', 'dly', 'atm', 'bt', 'bd', 'bj', 'bx', 'tmo', 'lsp', 'rc', 'rf'}

-- Phase 1: resolve custom ids so that nothing is written if any of them conflicts.
local seen = {}
local dup = {}
for i = 0, n - 1 do
  local b = 3 + i * WIDTH
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
      local f = redis.call('HMGET', job_key(prefix, id), 'name', 'data', 'dct', 'st')
      if f[4] then
        if f[1] ~= name or f[2] ~= data or (f[3] or '') ~= dct then
          return done({'DUPLICATE', id})
        end
        dup[i] = f[4]
      end
      seen[id] = {name, data, dct}
    end
  end
end

-- Phase 2: write.
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 3 + i * WIDTH
  local id = ARGV[b]
  if dup[i] then
    local st = dup[i] == true and redis.call('HGET', job_key(prefix, id), 'st') or dup[i]
    emit(events, maxlen, 'duplicated', id, {})
    out[#out + 1] = id
    out[#out + 1] = st
    out[#out + 1] = 1
  else
    if id == '' then
      id = tostring(redis.call('INCR', KEYS[2]))
    end
    local name, data, dct = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local pri, lifo, delay = ARGV[b + 4], ARGV[b + 5], tonumber(ARGV[b + 6]) or 0
    local fields = {'name', name, 'data', data, 'ct', now}
    if dct ~= '' then fields[#fields + 1] = 'dct'; fields[#fields + 1] = dct end
    for j = 1, #OPTIONAL do
      local value = ARGV[b + 3 + j]
      if value ~= '' and value ~= '0' then
        fields[#fields + 1] = OPTIONAL[j]
        fields[#fields + 1] = value
      end
    end
    local lifespan = tonumber(ARGV[b + 13]) or 0
    if lifespan > 0 then
      redis.call('ZADD', KEYS[6], now + lifespan, id)
    end
    local state, ev
    if delay > 0 then
      local run_at = now + delay
      state = 'delayed'
      fields[#fields + 1] = 'ra'
      fields[#fields + 1] = run_at
      redis.call('ZADD', KEYS[5], run_at, id)
      ev = {'s', state, 'n', name, 'ra', run_at}
    else
      state = 'waiting'
      redis.call('ZADD', KEYS[4], wait_score(KEYS[3], pri, lifo), id)
      ev = {'s', state, 'n', name}
    end
    fields[#fields + 1] = 'st'
    fields[#fields + 1] = state
    redis.call('HSET', job_key(prefix, id), unpack(fields))
    emit(events, maxlen, 'added', id, ev)
    out[#out + 1] = id
    out[#out + 1] = state
    out[#out + 1] = 0
  end
end
return done(out)
