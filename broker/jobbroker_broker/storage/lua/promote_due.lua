--[[
  Maintenance: move delayed jobs whose time has come to waiting, and bring back jobs parked by
  a group rate limit once their group's window ended (at most one window's worth per group,
  the rest stays parked for the next window), a bounded batch per call.
  Keys: prefix waiting delayed events seq meta groups
  Input:
    ARGV[1] maxlen: events maxlen
    ARGV[2] batch: batch size
  Output: {handled, next_due, now}
    jobs moved, the next due time in ms (-1 = none), and Redis' time.
]]
-- @include lib/base.lua
-- @include lib/groups.lua

local prefix, waiting, delayed, events, seq, meta, groups = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local maxlen, batch = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  make_waiting(prefix, waiting, seq, events, maxlen, id)
end
local moved = #due

local ready = redis.call('ZRANGE', groups, '-inf', now, 'BYSCORE', 'LIMIT', 0, batch)
if #ready > 0 then
  local limits = redis.call('HMGET', meta, 'glm', 'gld')
  local per_window, window = tonumber(limits[1]) or 0, tonumber(limits[2]) or 0
  for _, group in ipairs(ready) do
    local pkey = parked_key(prefix, group)
    -- No limit any more: everything comes back (a batch at a time).
    local take = per_window > 0 and math.min(per_window, batch) or batch
    local back = redis.call('ZPOPMIN', pkey, take)
    for i = 1, #back, 2 do
      redis.call('ZADD', waiting, back[i + 1], back[i])
      emit(events, maxlen, 'waiting', back[i], {'s', 'waiting'})
    end
    if #back > 0 then
      redis.call('HINCRBY', meta, 'parked', -(#back / 2))
    end
    if redis.call('ZCARD', pkey) > 0 then
      redis.call('ZADD', groups, now + math.max(window, 1), group)
    else
      redis.call('ZREM', groups, group)
    end
    moved = moved + #back / 2
  end
end

local next_due = next_score(delayed)
local next_group = next_score(groups)
if next_due < 0 or (next_group >= 0 and next_group < next_due) then
  next_due = next_group
end
return done({moved, next_due, now})
