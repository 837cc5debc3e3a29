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
