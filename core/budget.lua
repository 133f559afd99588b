--[[
hyperfollow weight budget: one GCRA (generic cell rate algorithm) per budget group, shared by every process.

The group's state is a theoretical arrival time, TAT (microseconds on the Redis clock): the moment from which
the next weight may be spent. A reservation of weight w starts at max(TAT, now) and pushes TAT to that start
+ w * emission interval, so consecutive slots are at least (weight of the earlier one) * interval apart and
any 60 s window holds at most the target weight plus one request. Every caller is told the exact time of its
slot and sleeps until then: FIFO across processes, no polling. All times come from Redis `TIME`, so every
process shares one clock.

KEYS[1]  budget hash (RedisKeys.budget(group)); fields:
           tat       next free moment, µs since the epoch (Redis clock)
           spent     total weight granted (reservations + charges - voided)
           grants    reservations granted
           waited    reservations that had to wait for their slot
           wait_us   total µs callers were told to wait
           refused   reservations refused because the queue was longer than the caller's max wait
           limited   HTTP 429 answers reported
           streak    consecutive 429s (reset by a success outside a penalty)
           voided    weight of reservations dropped because a 429 penalty began before their slot
KEYS[2]  penalty key (RedisKeys.budget_penalty(group)): exists while the group backs off after a 429;
         value = end of the back-off in µs, TTL = the back-off

ARGV[1] is the operation:
  "acquire",  weight, emission_us, max_wait_us
      -> {1, wait_us, streak, slot_us}  reserved: sleep wait_us, then send
      -> {0, retry_us, streak, 0}       the queue is longer than max_wait_us: nothing reserved, ask again later
  "charge",   weight, emission_us      (extra weight learnt from an answer, e.g. userFills items)
      -> {backlog_us}
  "penalize", base_ms, cap_ms, retry_after_ms (0 = none)
      -> {backoff_ms, streak}   a 429 during an active penalty only counts (no second doubling)
  "success"   -> {streak}       resets the 429 streak unless a penalty is active
  "void",     weight            -> {spent}
  "stats"     -> {now_us, tat_us, spent, grants, waited, wait_us, refused, limited, streak, voided, penalty_ms}
]]

if redis.replicate_commands then
  redis.replicate_commands()  -- Redis < 5: allow TIME before writes (a no-op since Redis 5)
end

local budget, penalty = KEYS[1], KEYS[2]
local op = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function fmt(x)
  return string.format('%.0f', x)  -- tostring() would print 1.7e+15 and lose precision
end

local function tat_of()
  local tat = tonumber(redis.call('HGET', budget, 'tat') or '0') or 0
  if tat < now then
    return now
  end
  return tat
end

if op == 'acquire' then
  local weight, emission, max_wait = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local start = tat_of()
  local wait = start - now
  local streak = tonumber(redis.call('HGET', budget, 'streak') or '0') or 0
  if wait > max_wait then
    redis.call('HINCRBY', budget, 'refused', 1)
    return {0, fmt(wait - max_wait), streak, 0}
  end
  redis.call('HSET', budget, 'tat', fmt(math.ceil(start + weight * emission)))
  redis.call('HINCRBY', budget, 'spent', weight)
  redis.call('HINCRBY', budget, 'grants', 1)
  if wait > 0 then
    redis.call('HINCRBY', budget, 'waited', 1)
    redis.call('HINCRBYFLOAT', budget, 'wait_us', wait)
  end
  return {1, fmt(wait), streak, fmt(start)}
end

if op == 'charge' then
  local weight, emission = tonumber(ARGV[2]), tonumber(ARGV[3])
  local tat = math.ceil(tat_of() + weight * emission)
  redis.call('HSET', budget, 'tat', fmt(tat))
  redis.call('HINCRBY', budget, 'spent', weight)
  return {fmt(tat - now)}
end

if op == 'penalize' then
  local base, cap, retry_after = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('HINCRBY', budget, 'limited', 1)
  local remaining = redis.call('PTTL', penalty)
  local streak = tonumber(redis.call('HGET', budget, 'streak') or '0') or 0
  if remaining > 0 and retry_after <= remaining then
    return {remaining, streak}  -- the same burst of 429s: already backing off
  end
  if remaining <= 0 then
    streak = streak + 1
    redis.call('HSET', budget, 'streak', streak)
  end
  local backoff = math.min(cap, base * 2 ^ (streak - 1))
  if retry_after > backoff then
    backoff = retry_after
  end
  backoff = math.max(1, math.floor(backoff))
  local until_us = now + backoff * 1000
  if tat_of() < until_us then
    redis.call('HSET', budget, 'tat', fmt(until_us))
  end
  redis.call('SET', penalty, fmt(until_us), 'PX', backoff)
  return {backoff, streak}
end

if op == 'success' then
  if redis.call('EXISTS', penalty) == 1 then
    return {tonumber(redis.call('HGET', budget, 'streak') or '0') or 0}
  end
  redis.call('HSET', budget, 'streak', 0)
  return {0}
end

if op == 'void' then
  local weight = tonumber(ARGV[2])
  redis.call('HINCRBY', budget, 'voided', weight)
  return {redis.call('HINCRBY', budget, 'spent', -weight)}
end

if op == 'stats' then
  local f = redis.call('HMGET', budget, 'tat', 'spent', 'grants', 'waited', 'wait_us', 'refused', 'limited',
                       'streak', 'voided')
  local out = {fmt(now)}
  for i = 1, #f do
    out[#out + 1] = f[i] or '0'
  end
  local remaining = redis.call('PTTL', penalty)
  if remaining < 0 then
    remaining = 0
  end
  out[#out + 1] = remaining
  return out
end

return redis.error_reply('budget.lua: unknown operation ' .. tostring(op))
