--[[
  Add the job of one occurrence of a repeatable job (schedule) and move the schedule on, exactly
  once however many broker replicas race on it: compare-and-set on the schedule's version and
  next run time.
  Keys: prefix seq waiting delayed expiring events schedules
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] key: schedule key
    ARGV[3] version: the schedule's version (field v) the caller read
    ARGV[4] occurrence: the occurrence: the next run time (ms, field nr) the caller read
    ARGV[5] next_run: the next run time after this one, which the caller computed ('' ends the
      schedule)
  Output: {fired, id, state, duplicate}
    fired is 0 when the schedule is gone or has moved on (another replica fired it, or an
    upsert changed it), and then id and state are '' and duplicate 0. Else 1, with the job's
    id, state and whether it was there already (0/1). The job id is
    'sched:<key>:<occurrence>', so the job of an occurrence is added at most once even across a
    remove and re-upsert; a job already there under that id is left as it is.
  The schedule hash (prefix .. 'schedule:' .. key) holds v, nr, runs and the job template:
  name, data, dct and o1..o13, the values of the options in TEMPLATE_OPTIONS' order ('' when
  unset; contracts/schedules.py writes them).
]]
-- @include lib/base.lua
-- @include lib/add_job.lua

local TEMPLATE_OPTIONS = {'pri', 'lifo', 'dly', 'atm', 'bt', 'bd', 'bj', 'bx', 'tmo', 'lsp', 'rc',
  'rf', 'grp'}

local prefix, schedules = KEYS[1], KEYS[7]
local k = {prefix = KEYS[1], seq = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  expiring = KEYS[5], events = KEYS[6]}
local maxlen, key, version, occurrence, next_run = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local skey = prefix .. 'schedule:' .. key

local f = redis.call('HMGET', skey, 'v', 'nr', 'name', 'data', 'dct',
  'o1', 'o2', 'o3', 'o4', 'o5', 'o6', 'o7', 'o8', 'o9', 'o10', 'o11', 'o12', 'o13')
if f[1] ~= version or f[2] ~= occurrence or occurrence == '0' then
  return {0, '', '', 0}
end

local id = 'sched:' .. key .. ':' .. occurrence
local state, duplicate = nil, 0
local _, _, _, st = existing_job(prefix, id)
if st then
  state, duplicate = st, 1
else
  local options = {}
  for j = 1, #TEMPLATE_OPTIONS do
    local value = f[5 + j]
    if value and value ~= '' and value ~= '0' then
      options[#options + 1] = TEMPLATE_OPTIONS[j]
      options[#options + 1] = value
    end
  end
  state = write_job(k, maxlen, id, f[3] or '', f[4] or '', f[5] or '', options, 1, #options,
    now_ms())
end

redis.call('HINCRBY', skey, 'runs', 1)
if next_run == '' then
  redis.call('HSET', skey, 'nr', '0')
  redis.call('ZADD', schedules, '+inf', key)
else
  redis.call('HSET', skey, 'nr', next_run)
  redis.call('ZADD', schedules, next_run, key)
end
return done({1, id, state, duplicate})
