-- After a trader's state fetched at time T is stored, clear its activity mark if that state covers every
-- trade discovery has seen for it (workers/marks.py). Atomic with discovery's marks.lua.
--
-- KEYS[1]  active:{bucket}          zset address -> earliest trade (ms) not yet covered by a refresh
-- KEYS[2]  active:latest:{bucket}   zset address -> latest trade (ms)
-- ARGV[1]  the address
-- ARGV[2]  T, the state's time (ms)
--
-- A trade at T itself may have happened just after the state was taken (same millisecond), so only trades
-- strictly before T count as covered. When a later trade exists the mark stays, its earliest time advanced
-- to T (every trade before T is covered; the first uncovered one is at T or later).
-- Returns {1 if cleared else 0, the earliest time the mark had (ms), or -1 without a mark}.

local address, t = ARGV[1], tonumber(ARGV[2])
local earliest = redis.call("ZSCORE", KEYS[1], address)
local latest = redis.call("ZSCORE", KEYS[2], address)
local earliest_ms = -1
if earliest ~= false then
  earliest_ms = tonumber(earliest)
end
if latest == false or tonumber(latest) < t then
  redis.call("ZREM", KEYS[1], address)
  redis.call("ZREM", KEYS[2], address)
  return {1, earliest_ms}
end
if earliest == false or earliest_ms < t then
  redis.call("ZADD", KEYS[1], t, address)
end
return {0, earliest_ms}
