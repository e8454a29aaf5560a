-- Shared helpers, inlined into each script by scripts.py at load time.
--
-- The fields of the job hash and of the queue's meta hash are named in one place,
-- contracts/hashes.py (JobField, MetaField), with what each holds; tests/lua/test_hash_fields.py
-- checks that the scripts use no other.
--
-- Every key is derived from the queue prefix KEYS[1] ("jb:{queue}:"), so all of them carry the
-- queue's hash tag and live in one cluster slot.

local PRIORITY_BAND = 8589934592 -- 2^33: one band per priority
local SEQ_BASE = 4294967296      -- 2^32: FIFO jobs sit above LIFO ones within a band

-- @include lib/clock.lua

local function job_key(prefix, id)
  return prefix .. 'job:' .. id
end

local function logs_key(prefix, id)
  return prefix .. 'logs:' .. id
end

-- Append an event to the queue's stream; the arguments after `id` are its other fields, as
-- name, value pairs (passed straight through: no table to build and unpack, which the hot
-- paths notice). The stream is trimmed once per script call, by done(), not on every XADD.
local emitted_to, emitted_maxlen = nil, nil
local function emit_fields(events, maxlen, etype, id, ...)
  emitted_to, emitted_maxlen = events, maxlen
  return redis.call('XADD', events, '*', 'e', etype, 'j', id, ...)
end

-- emit_fields() with the fields in a flat list.
local function emit(events, maxlen, etype, id, fields)
  return emit_fields(events, maxlen, etype, id, unpack(fields))
end

-- Tell the worker holding a lease that it must stop: a small stream of its own, so that worker
-- streams never read the queue's whole event stream. `kind`: cancel-requested, stalled,
-- timeout or cancelled.
local function signal(signals, kind, id, fence, worker)
  redis.call('XADD', signals, 'MAXLEN', '~', 1000, '*', 'k', kind, 'j', id, 'f', fence or '0',
    'w', worker or '')
end

-- Run a variadic command (ZADD, ZREM) on `key` with a flat list of arguments, in chunks of
-- an even size that stays well within Lua's unpack limit: one call for a whole batch of jobs
-- instead of one per job.
local function call_many(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

-- Every script returns through done(): it caps the event stream if the script emitted, and
-- adds what the cap removed to the `trimmed` count of the queue's meta hash (KEYS[1] is every
-- script's queue prefix): Redis 6.2's XINFO STREAM does not say whether anything was ever
-- removed, and a subscriber resuming from an old id must be told of a loss only if there was one.
local function done(result)
  if emitted_to then
    local removed = redis.call('XTRIM', emitted_to, 'MAXLEN', '~', emitted_maxlen)
    if removed > 0 then
      redis.call('HINCRBY', KEYS[1] .. 'meta', 'trimmed', removed)
    end
  end
  return result
end

local function fence_of(token)
  return tonumber(string.match(token or '', '^(%d+)%-')) or 0
end

-- Score of a job entering the waiting set: priority band, then LIFO/FIFO by sequence. `seq`,
-- optional, is a sequence number reserved already (a batch reserves all of its at once).
local function wait_score(seq_key, pri, lifo, seq)
  seq = seq or redis.call('INCR', seq_key)
  local band = (tonumber(pri) or 0) * PRIORITY_BAND
  if lifo == '1' then
    return band + SEQ_BASE - seq
  end
  return band + SEQ_BASE + seq
end

-- Front of its priority band: where stalled and released jobs go back to.
local function front_score(pri)
  return (tonumber(pri) or 0) * PRIORITY_BAND
end

local function remove_job_keys(prefix, id)
  redis.call('DEL', job_key(prefix, id), logs_key(prefix, id))
end

-- Apply a retention policy ("remove,keep_last,keep_age_ms") to a finished-jobs set just after
-- `id` joined it. Removes at most 100 other jobs per call so the work stays bounded.
local function retain(prefix, set_key, id, policy, now)
  if not policy then
    return
  end
  local remove, keep_last, keep_age = string.match(policy, '^(%d+),(%d+),(%d+)$')
  if remove == '1' then
    redis.call('ZREM', set_key, id)
    remove_job_keys(prefix, id)
    return
  end
  keep_last, keep_age = tonumber(keep_last), tonumber(keep_age)
  if keep_age > 0 then
    local old = redis.call('ZRANGE', set_key, '-inf', '(' .. (now - keep_age), 'BYSCORE', 'LIMIT', 0, 100)
    for _, old_id in ipairs(old) do
      redis.call('ZREM', set_key, old_id)
      remove_job_keys(prefix, old_id)
    end
  end
  if keep_last > 0 then
    local extra = math.min(redis.call('ZCARD', set_key) - keep_last, 100)
    if extra > 0 then
      -- Jobs finished in the same millisecond tie on score: never pick the one just finished.
      local old = redis.call('ZRANGE', set_key, 0, extra)
      local removed = 0
      for _, old_id in ipairs(old) do
        if removed < extra and old_id ~= id then
          redis.call('ZREM', set_key, old_id)
          remove_job_keys(prefix, old_id)
          removed = removed + 1
        end
      end
    end
  end
end

-- Check that `token` holds the live lease on a job, reading the fields named after `now` in
-- the same HMGET. Returns nil when it does, else a reason (JOB_NOT_FOUND, INVALID_FIELD: the
-- token was never issued for this job, LEASE_EXPIRED or LEASE_SUPERSEDED); then the job's
-- state, and the fields read (the extra ones from index 4). Reasons are ErrorReason names
-- (error_reason.proto), as every script's.
local function check_lease(jkey, token, now, ...)
  local f = redis.call('HMGET', jkey, 'st', 'tok', 'le', ...)
  local st, tok, le = f[1], f[2], f[3]
  if not st then
    return 'JOB_NOT_FOUND', ''
  end
  if tok ~= token then
    -- Each lease of a job takes the next fence and the job keeps the token of its newest one,
    -- so a token without a fence, with a fence above the newest, or with the newest fence but
    -- not its token, was never issued for this job. Only a lower fence can be a real lease
    -- that another one replaced.
    local given = fence_of(token)
    if given == 0 or given >= fence_of(tok) then
      return 'INVALID_FIELD', st
    end
    return 'LEASE_SUPERSEDED', st
  end
  if st ~= 'active' or tonumber(le) <= now then
    return 'LEASE_EXPIRED', st
  end
  return nil, st, f
end

-- Make a job waiting at the back of its priority (after a delay, a promote or a retry).
local function make_waiting(prefix, waiting, seq_key, events, maxlen, id)
  local jkey = job_key(prefix, id)
  local f = redis.call('HMGET', jkey, 'pri', 'lifo')
  redis.call('HSET', jkey, 'st', 'waiting')
  redis.call('HDEL', jkey, 'ra')
  redis.call('ZADD', waiting, wait_score(seq_key, f[1], f[2]), id)
  emit(events, maxlen, 'waiting', id, {'s', 'waiting'})
end

-- The earliest score of a sorted set, or -1 when it is empty.
local function next_score(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return -1
  end
  return tonumber(first[2])
end
