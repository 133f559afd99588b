-- Publish stored position events (workers/publish.py): append each to the stream, then announce it on the
-- channel with its stream id, in one script so the channel's order is the stream's order across workers.
--
-- KEYS[1]  trade_events:stream       stream, field "data" = the TradeEventMessage JSON (no stream_id)
-- KEYS[2]  trade_events:published    zset event id -> publish time (ms): an event is published once
-- ARGV[1]  the channel (trade_events)
-- ARGV[2]  MAXLEN of the stream
-- ARGV[3]  "1": trim approximately (MAXLEN ~, cheap), "0": exactly
-- ARGV[4]  now (ms)
-- ARGV[5]  how long published ids are remembered (ms)
-- ARGV[6..] pairs: event id, message JSON (an object that has no "stream_id" key)
--
-- Returns one string per event: its stream entry id, or "" when the event was published before.

local channel, maxlen, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local ids = {}
for i = 6, #ARGV, 2 do
  local event_id, message = ARGV[i], ARGV[i + 1]
  if redis.call("ZADD", KEYS[2], "NX", now, event_id) == 1 then
    local entry
    if ARGV[3] == "1" then
      entry = redis.call("XADD", KEYS[1], "MAXLEN", "~", maxlen, "*", "data", message)
    else
      entry = redis.call("XADD", KEYS[1], "MAXLEN", maxlen, "*", "data", message)
    end
    -- splice the entry id into the JSON object: no decode/encode, so numbers keep their exact text
    redis.call("PUBLISH", channel, string.sub(message, 1, -2) .. ',"stream_id":"' .. entry .. '"}')
    ids[#ids + 1] = entry
  else
    ids[#ids + 1] = ""
  end
end
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[5]))
return ids
