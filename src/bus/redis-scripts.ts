/**
 * Lua scripts of the Redis work queue. Each runs atomically on the server, so an
 * enqueue, a claim and a completion never interleave. Times come from the server's
 * TIME (ms), not from the callers' clocks: replicas on machines with skewed clocks
 * still agree on what is due.
 *
 * Keys (all under one prefix):
 * - queue:  sorted set, key -> due time (ms); waiting keys, the earliest due time wins.
 * - dirty:  sorted set, key -> due time; keys enqueued while a consumer holds them.
 * - active: sorted set, key -> reservation expiry (ms); keys being processed.
 * - holder: hash, key -> consumer token of the reservation.
 */

/** Server time in ms, as a Lua number (exact below 2^53). */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** Lua numbers print as 1.7e+12 by default; scores are written as plain integers. */
const INT = `local function int(n) return string.format('%.0f', n) end`;

/**
 * KEYS: queue, dirty, active. ARGV: key, delayMs, wake channel.
 * Into `dirty` while the key is held (it runs again after the holder finishes),
 * else into `queue`; either way only an earlier due time replaces a later one.
 */
export const ENQUEUE_SCRIPT = `${NOW}
${INT}
local due = now + tonumber(ARGV[2])
local target = KEYS[1]
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then target = KEYS[2] end
local prev = redis.call('ZSCORE', target, ARGV[1])
if (not prev) or due < tonumber(prev) then redis.call('ZADD', target, int(due), ARGV[1]) end
if target == KEYS[1] then redis.call('PUBLISH', ARGV[3], int(due)) end
return 1`;

/**
 * KEYS: queue, dirty, active, holder. ARGV: consumer token, max keys, reservation ms.
 * First gives back the keys of consumers that stopped renewing (a dead process) as due
 * now, then reserves up to `max` due keys, earliest first. Returns
 * [msUntilNextDueOrExpiry (-1: nothing pending), key...].
 */
export const CLAIM_SCRIPT = `${NOW}
${INT}
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', int(now))
for _, k in ipairs(expired) do
  redis.call('ZREM', KEYS[3], k)
  redis.call('HDEL', KEYS[4], k)
  redis.call('ZREM', KEYS[2], k)
  local q = redis.call('ZSCORE', KEYS[1], k)
  if (not q) or now < tonumber(q) then redis.call('ZADD', KEYS[1], int(now), k) end
end
local out = {}
local max = tonumber(ARGV[2])
if max > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, max)
  for _, k in ipairs(due) do
    redis.call('ZREM', KEYS[1], k)
    redis.call('ZADD', KEYS[3], int(now + tonumber(ARGV[3])), k)
    redis.call('HSET', KEYS[4], k, ARGV[1])
    out[#out + 1] = k
  end
end
local nextAt = -1
local q = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if q[2] then nextAt = tonumber(q[2]) end
local a = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if a[2] and (nextAt < 0 or tonumber(a[2]) < nextAt) then nextAt = tonumber(a[2]) end
local wait = -1
if nextAt >= 0 then wait = math.max(0, nextAt - now) end
table.insert(out, 1, wait)
return out`;

/**
 * KEYS: queue, dirty, active, holder. ARGV: key, consumer token, wake channel,
 * "1" to put the key back as due now (claimed but never handled).
 * Ends a reservation if it is still this consumer's (it may have expired and moved on
 * to another consumer, whose reservation must stay); a key enqueued meanwhile moves
 * from dirty back to the queue. Returns 1 when the reservation was ours.
 */
export const COMPLETE_SCRIPT = `${NOW}
${INT}
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local due = nil
local d = redis.call('ZSCORE', KEYS[2], ARGV[1])
if d then
  redis.call('ZREM', KEYS[2], ARGV[1])
  due = tonumber(d)
end
if ARGV[4] == '1' and ((not due) or now < due) then due = now end
if due then
  local q = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if (not q) or due < tonumber(q) then redis.call('ZADD', KEYS[1], int(due), ARGV[1]) end
  redis.call('PUBLISH', ARGV[3], int(due))
end
return 1`;

/**
 * KEYS: active, holder. ARGV: consumer token, reservation ms, key...
 * Extends this consumer's reservations; returns how many were still its own.
 */
export const RENEW_SCRIPT = `${NOW}
${INT}
local n = 0
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', int(now + tonumber(ARGV[2])), ARGV[i])
    n = n + 1
  end
end
return n`;

/** KEYS: queue. The number of waiting keys that are due now. */
export const BACKLOG_SCRIPT = `${NOW}
return redis.call('ZCOUNT', KEYS[1], '-inf', now)`;
