-- The shard's feeder lease (workers/election.py): at most one feeder per shard feeds its queue.
--
-- KEYS[1]  feeder:{shard}:lock   string: the holder's id (POD_NAME or host:pid:random), with a TTL
-- ARGV[1]  "acquire" | "renew" | "release"
-- ARGV[2]  the caller's owner id
-- ARGV[3]  lease lifetime in ms (acquire, renew)
--
-- acquire: take the lease when it is free, or when it already names the caller (a restarted process in the
--          same pod); returns 1 when the caller holds it afterwards, else 0.
-- renew:   extend the lease only while the caller still holds it; 1 = held, 0 = lost.
-- release: delete the lease only if the caller holds it; 1 = released.

local op, owner = ARGV[1], ARGV[2]
local holder = redis.call("GET", KEYS[1])
if op == "acquire" then
  if holder == false or holder == owner then
    redis.call("SET", KEYS[1], owner, "PX", tonumber(ARGV[3]))
    return 1
  end
  return 0
elseif op == "renew" then
  if holder == owner then
    redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[3]))
    return 1
  end
  return 0
elseif op == "release" then
  if holder == owner then
    redis.call("DEL", KEYS[1])
    return 1
  end
  return 0
end
return redis.error_reply("unknown lease operation " .. tostring(op))
