--[[
  Complete leased jobs: active -> completed (or cancelled when a Cancel arrived meanwhile).
  Keys: prefix active completed cancelled events
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] job_count: number of jobs N
    then per job:
      id: job id
      token: lease token
      result: result body
      result_type: result content type
  Output: per job {reason, state, run_ms}
    reason '' when applied, else an ErrorReason name (check_lease); run_ms is how long the
    attempt ran (lease to now), 0 when refused (for metrics).
]]
-- @include lib/base.lua
-- @include lib/finish.lua
-- @include lib/complete_jobs.lua

local k = {prefix = KEYS[1], active = KEYS[2], completed = KEYS[3], cancelled = KEYS[4],
  events = KEYS[5]}
local maxlen, n = ARGV[1], tonumber(ARGV[2])
local first_item = 3
return done(complete_jobs(k, maxlen, n, first_item, now_ms()))
