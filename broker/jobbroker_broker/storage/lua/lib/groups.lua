-- Group rate limits. Needs lib/base.lua.
--
-- A job of a group that is over its limit (meta: glm jobs per gld ms, counted per group in
-- `gcount:<group>`) is parked in its group's own sorted set `parked:<group>`, scored with its
-- waiting score, so that one busy group cannot hold up the others. The queue's `groups` sorted
-- set says when each group's parked jobs may come back; meta's `parked` field counts them
-- (they are still in the waiting state). Derived keys carry the queue's hash tag, like job keys.

local function parked_key(prefix, group)
  return prefix .. 'parked:' .. group
end

local function group_counter(prefix, group)
  return prefix .. 'gcount:' .. group
end

-- Take a waiting job out of its group's parked set, if it is there (cancel, remove, expire).
local function unpark_one(prefix, meta, id, group)
  if group and redis.call('ZREM', parked_key(prefix, group), id) == 1 then
    redis.call('HINCRBY', meta, 'parked', -1)
  end
end

-- Remove up to `limit` parked jobs of every group for good (drain, obliterate); returns how many.
local function drop_parked(prefix, meta, groups, expiring, limit)
  local removed = 0
  local names = redis.call('ZRANGE', groups, 0, limit - 1)
  for _, group in ipairs(names) do
    if removed >= limit then
      break
    end
    local pkey = parked_key(prefix, group)
    local ids = redis.call('ZRANGE', pkey, 0, limit - removed - 1)
    for _, id in ipairs(ids) do
      redis.call('ZREM', pkey, id)
      redis.call('ZREM', expiring, id)
      remove_job_keys(prefix, id)
    end
    removed = removed + #ids
    if #ids > 0 then
      redis.call('HINCRBY', meta, 'parked', -#ids)
    end
    if redis.call('ZCARD', pkey) == 0 then
      redis.call('ZREM', groups, group)
    end
  end
  return removed
end
