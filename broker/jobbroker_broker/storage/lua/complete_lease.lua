--[[
  Complete leased jobs, then lease up to N waiting jobs of the same queue to the same worker,
  in one call: a worker's stream message that carries its outcomes and asks for the next
  batch (ReportProgressRequest.lease). The completions are complete.lua's, the leases
  lease.lua's, each with its checks: every completion is checked against its lease token, the
  queue's settings bind the leases, and the same events are emitted (`completed` per job
  first, then `active` per job leased, and `drained`).
  Keys: prefix active completed cancelled events waiting expiring failed seq meta limiter groups
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] max_jobs: most jobs to lease
    ARGV[3] worker: worker id
    ARGV[4] lease_ms: lease duration
    ARGV[5] token_suffix: random text the lease tokens carry after their fence
    ARGV[6] job_count: number of jobs N to complete
    then per job:
      id: job id
      token: lease token
      result: result body
      result_type: result content type
  Output: {completed, leased}
    completed is complete.lua's reply (per completed job {reason, state, run_ms}), leased
    lease.lua's (per leased job its 15 values, then {held}).
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/groups.lua
-- @include lib/complete_jobs.lua
-- @include lib/lease_jobs.lua

local k = {prefix = KEYS[1], active = KEYS[2], completed = KEYS[3], cancelled = KEYS[4],
  events = KEYS[5], waiting = KEYS[6], expiring = KEYS[7], failed = KEYS[8], seq = KEYS[9],
  meta = KEYS[10], limiter = KEYS[11], groups = KEYS[12]}
local maxlen, max_jobs, worker, lease_ms, token_suffix = ARGV[1], tonumber(ARGV[2]), ARGV[3],
  ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
local first_item = 7
local now = now_ms()
local completed = complete_jobs(k, maxlen, n, first_item, now)
return done({completed, lease_jobs(k, maxlen, max_jobs, worker, lease_ms, token_suffix, now)})
