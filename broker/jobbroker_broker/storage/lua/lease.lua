--[[
  Lease up to N waiting jobs to a worker: waiting -> active, scored by lease deadline.
  A job whose lifespan ran out on the way fails with reason EXPIRED instead. The queue's
  settings (meta) are enforced here, for every worker of every replica: nothing is leased from
  a paused queue, at most `conc` jobs are active at once, and at most `rlm` jobs start per
  `rld` ms (a fixed window counted in `limiter`), and at most `glm` jobs of one group start per
  `gld` ms: a job of a group over its limit is parked until the group's window ends
  (lib/groups.lua). A call that takes the last waiting job emits `drained` (BullMQ's meaning:
  nothing left to lease; jobs parked by a group limit still count as waiting).
  Keys: prefix waiting active expiring failed events seq meta limiter groups
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] max_jobs: most jobs to lease
    ARGV[3] worker: worker id
    ARGV[4] lease_ms: lease duration
    ARGV[5] token_suffix: random text the lease tokens carry after their fence
  Output: per job {id, name, data, data_type, attempt, max_attempts, token, fence,
      lease_expires_at, timeout_at, progress_percent, progress_value, progress_type, wait_ms,
      trace_context}
    then {held}
    timeout_at is 0 without an attempt timeout; the progress values are '' when none was
    reported; trace_context is '' for a job added without one; wait_ms is, for metrics, creation plus delay to this first start (-1 for a later
    start or a job retried by hand). held says what held leasing back: 0 nothing, -1 the queue
    is paused, -2 the concurrency limit, or N > 0: the rate limit, for N more ms.
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/groups.lua
-- @include lib/lease_jobs.lua

local k = {prefix = KEYS[1], waiting = KEYS[2], active = KEYS[3], expiring = KEYS[4],
  failed = KEYS[5], events = KEYS[6], seq = KEYS[7], meta = KEYS[8], limiter = KEYS[9],
  groups = KEYS[10]}
local maxlen, max_jobs, worker, lease_ms, token_suffix = ARGV[1], tonumber(ARGV[2]), ARGV[3],
  ARGV[4], ARGV[5]
return done(lease_jobs(k, maxlen, max_jobs, worker, lease_ms, token_suffix, now_ms()))
