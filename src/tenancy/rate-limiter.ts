import { Redis } from 'ioredis';
import { RedisLuaScript } from '../bus/redis-lua-script.js';
import { systemClock, type Clock } from '../domain/clock.js';

/** Token bucket size and refill. */
export interface TokenBucketOptions {
  /** Tokens added per second (the sustained request rate). */
  ratePerSecond: number;
  /** Bucket size: how many requests may come at once after a quiet spell. */
  burst: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** When refused: how long until one token is there (ms, > 0). */
  retryAfterMs: number;
}

/** Token buckets by key (an API key id). Adapters: memory (one replica), Redis (shared). */
export interface RateLimiter {
  /** Takes one token from `key`'s bucket if there is one. */
  take(key: string): Promise<RateDecision>;
  close(): Promise<void>;
}

export interface BucketState {
  tokens: number;
  updatedMs: number;
}

/**
 * Pure token-bucket step: refill for the time since `state.updatedMs` (never for time
 * going backwards), then take one token if there is one.
 */
export function takeToken(state: BucketState | undefined, nowMs: number, o: TokenBucketOptions): { state: BucketState; decision: RateDecision } {
  const elapsedMs = state ? Math.max(0, nowMs - state.updatedMs) : 0;
  const tokens = state ? Math.min(o.burst, state.tokens + (elapsedMs * o.ratePerSecond) / 1000) : o.burst;
  const updatedMs = state ? Math.max(state.updatedMs, nowMs) : nowMs;
  if (tokens >= 1) return { state: { tokens: tokens - 1, updatedMs }, decision: { allowed: true, remaining: Math.floor(tokens - 1), retryAfterMs: 0 } };
  return { state: { tokens, updatedMs }, decision: { allowed: false, remaining: 0, retryAfterMs: Math.max(1, Math.ceil(((1 - tokens) * 1000) / o.ratePerSecond)) } };
}

/** Buckets in this process; exact for one replica. Full idle buckets are dropped. */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, BucketState>();

  constructor(
    private readonly o: TokenBucketOptions,
    private readonly clock: Clock = systemClock,
    /** Buckets kept before full ones are swept. */
    private readonly maxBuckets = 100_000,
  ) {}

  async take(key: string): Promise<RateDecision> {
    const now = this.clock.now();
    const { state, decision } = takeToken(this.buckets.get(key), now, this.o);
    this.buckets.set(key, state);
    if (this.buckets.size > this.maxBuckets) this.sweep(now);
    return decision;
  }

  private sweep(now: number): void {
    const fullAfterMs = (this.o.burst / this.o.ratePerSecond) * 1000;
    for (const [k, s] of this.buckets) if (now - s.updatedMs >= fullAfterMs) this.buckets.delete(k);
  }

  async close(): Promise<void> {
    this.buckets.clear();
  }
}

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
