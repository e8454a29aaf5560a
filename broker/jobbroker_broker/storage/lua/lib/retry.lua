-- A new run of a finished job: fresh attempts, back to waiting. Needs lib/base.lua.

local function restart(prefix, waiting, expiring, seq_key, events, maxlen, id, now)
  local jkey = job_key(prefix, id)
  redis.call('HDEL', jkey, 'fa', 'cr', 'crr', 'sa', 'res', 'rct', 'fr', 'fm', 'fty', 'fsk', 'fat',
    'w')
  redis.call('HSET', jkey, 'am', 0, 'sc', 0)
  local lifespan = tonumber(redis.call('HGET', jkey, 'lsp')) or 0
  if lifespan > 0 then
    -- The lifespan bounds the new run's start.
    redis.call('ZADD', expiring, now + lifespan, id)
    redis.call('HSET', jkey, 'ct', now)
  end
  make_waiting(prefix, waiting, seq_key, events, maxlen, id)
end
