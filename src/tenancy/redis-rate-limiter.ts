import { Redis } from 'ioredis';
import { RedisLuaScript } from '../bus/redis-lua-script.js';
import type { RateDecision, RateLimiter, TokenBucketOptions } from './rate-limiter.js';

/**
 * The same bucket in Redis, updated by one Lua script so that replicas share it exactly.
 * Time comes from the Redis server (TIME), so replicas with skewed clocks agree. The key
 * expires once the bucket would be full again: idle keys cost nothing.
 */
const TAKE_SCRIPT = new RedisLuaScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = burst
local ts = now
if state[1] then
  tokens = tonumber(state[1])
  ts = tonumber(state[2])
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
    ts = now
  end
end
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) * 1000 / rate)
  if retry < 1 then retry = 1 end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, math.floor(tokens), retry}
`);

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: Redis;

  /**
   * @param url redis:// URL (AGENT_PLATFORM_REDIS_URL)
   * @param prefix key prefix; tests use a unique one per run
   */
  constructor(
    url: string,
    private readonly o: TokenBucketOptions,
    private readonly prefix = 'agent-platform:ratelimit:',
  ) {
    // Fail fast instead of queueing commands while Redis is away: a request should not hang.
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true });
    this.redis.on('error', () => undefined);
  }

  async take(key: string): Promise<RateDecision> {
    const [allowed, remaining, retry] = (await TAKE_SCRIPT.run(this.redis, [this.prefix + key], [this.o.ratePerSecond, this.o.burst])) as [number, number, number];
    return { allowed: allowed === 1, remaining: Number(remaining), retryAfterMs: Number(retry) };
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
