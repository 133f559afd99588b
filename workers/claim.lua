-- Claim traders for a batch the feeder is about to enqueue (workers/feeder.py). Only the lease holder may
-- claim, so a feeder that lost its lease (paused past the TTL) cannot put a trader into a second batch.
--
-- KEYS[1]  feeder:{shard}:lock      the lease (its value must be ARGV[1])
-- KEYS[2]  feeder:{shard}:pending   zset address -> claim deadline (ms); an expired claim is free
-- ARGV[1]  the feeder's owner id
-- ARGV[2]  now (ms)
-- ARGV[3]  the new claims' deadline (ms)
-- ARGV[4..] addresses
--
-- Returns {1, claimed addresses...} (those not claimed by a live batch), or {0} without the lease.

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return {0}
end
local now, deadline = tonumber(ARGV[2]), ARGV[3]
local claimed = {1}
for i = 4, #ARGV do
  local score = redis.call("ZSCORE", KEYS[2], ARGV[i])
  if score == false or tonumber(score) <= now then
    redis.call("ZADD", KEYS[2], deadline, ARGV[i])
    claimed[#claimed + 1] = ARGV[i]
  end
end
return claimed
