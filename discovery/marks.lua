-- Mark traders active: one call per flush, whatever the number of traders (see discovery/marks.py).
--
-- KEYS[2i-1]  active:{bucket}         zset address -> earliest trade not yet covered by a refresh (ZADD NX)
-- KEYS[2i]    active:latest:{bucket}  zset address -> latest trade (ZADD GT)
-- ARGV[i]     the bucket's traders as "first address last first address last ..." (ms, canonical address, ms)
--
-- Packing one string per bucket instead of two arguments per trader keeps the client's work (which
-- redis-py's asyncio client does in Python, argument by argument) out of the hot path.

local CHUNK = 4000  -- members per ZADD, well inside Lua's unpack limit

for i = 1, #ARGV do
  local earliest_key, latest_key = KEYS[2 * i - 1], KEYS[2 * i]
  local earliest, latest, n = {}, {}, 0
  for first, address, last in string.gmatch(ARGV[i], "(%d+) (%S+) (%d+)") do
    earliest[n + 1], earliest[n + 2] = first, address
    latest[n + 1], latest[n + 2] = last, address
    n = n + 2
    if n >= CHUNK then
      redis.call("ZADD", earliest_key, "NX", unpack(earliest))
      redis.call("ZADD", latest_key, "GT", unpack(latest))
      earliest, latest, n = {}, {}, 0
    end
  end
  if n > 0 then
    redis.call("ZADD", earliest_key, "NX", unpack(earliest))
    redis.call("ZADD", latest_key, "GT", unpack(latest))
  end
end
return #ARGV
