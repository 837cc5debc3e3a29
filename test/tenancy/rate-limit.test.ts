import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisRateLimiter } from '../../src/tenancy/redis-rate-limiter.js';
import { REDIS_URL, TenancyPlatform, isCI, uid } from './tenancy-harness.js';

const redisUp = await new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0 }).connect().then(
  () => true,
  () => false,
);
if (isCI && !redisUp) throw new Error(`rate limit tests need Redis at ${REDIS_URL} (CI=true forbids skipping)`);

const prefix = `ap-test-rl-${randomBytes(4).toString('hex')}:`;
afterAll(async () => {
  if (!redisUp) return;
  const r = new Redis(REDIS_URL);
  const keys = await r.keys(`${prefix}*`);
  if (keys.length) await r.del(...keys);
  r.disconnect();
});

describe.skipIf(!redisUp)('rate limits shared through Redis', () => {
  it('two limiters (replicas) share one bucket per key: exactly the burst passes, then Retry-After', async () => {
    const a = new RedisRateLimiter(REDIS_URL, { ratePerSecond: 0.5, burst: 7 }, prefix);
    const b = new RedisRateLimiter(REDIS_URL, { ratePerSecond: 0.5, burst: 7 }, prefix);
    try {
      const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).take('key-1')));
      expect(decisions.filter((d) => d.allowed)).toHaveLength(7);
      const refused = decisions.find((d) => !d.allowed)!;
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(2000);
      expect((await a.take('key-2')).allowed).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('the API answers 429 RATE_LIMITED with Retry-After per key; other keys and the bootstrap admin are unaffected', async () => {
    const p = await TenancyPlatform.start('sqlite', { AGENT_PLATFORM_RATE_LIMIT_RPS: '0.2', AGENT_PLATFORM_RATE_LIMIT_BURST: '3', AGENT_PLATFORM_REDIS_URL: REDIS_URL, AGENT_PLATFORM_REDIS_PREFIX: prefix });
    try {
      const t = uid('rl');
      await p.createTenant(t);
      const k1 = await p.createKey(t, 'viewer');
      const k2 = await p.createKey(t, 'viewer');
      const statuses: number[] = [];
      let limited;
      for (let i = 0; i < 5; i++) {
        const r = await p.request('GET', '/api/v1/agents', { token: k1.key });
        statuses.push(r.status);
        if (r.status === 429) limited = r;
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(limited!.json.error.code).toBe('RATE_LIMITED');
      expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await p.request('GET', '/api/v1/agents', { token: k2.key })).status).toBe(200);
      for (let i = 0; i < 10; i++) expect((await p.request('GET', '/api/v1/agents')).status).toBe(200);
    } finally {
      await p.close();
    }
  }, 60_000);
});

describe('rate limits in memory (no Redis configured)', () => {
  it('the API answers 429 RATE_LIMITED with Retry-After per key; other keys and the bootstrap admin are unaffected; the bucket refills', async () => {
    // One token per 2 s, burst 3: three pass, then 429 until a token has refilled (the five
    // requests take far less than 2 s, even on a loaded machine).
    const p = await TenancyPlatform.start('sqlite', { AGENT_PLATFORM_RATE_LIMIT_RPS: '0.5', AGENT_PLATFORM_RATE_LIMIT_BURST: '3' });
    try {
      const t = uid('rlm');
      await p.createTenant(t);
      const k1 = await p.createKey(t, 'viewer');
      const k2 = await p.createKey(t, 'viewer');
      const responses = [];
      for (let i = 0; i < 5; i++) responses.push(await p.request('GET', '/api/v1/agents', { token: k1.key }));
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
      const limited = responses[3]!;
      expect(limited.json.error.code).toBe('RATE_LIMITED');
      expect(limited.headers.get('retry-after')).toBe('2');
      expect(limited.json.error.details.retryAfterSeconds).toBe(2);
      expect(limited.json.error.details.retryAfterMs).toBeGreaterThan(1000);
      expect(limited.json.error.details.retryAfterMs).toBeLessThanOrEqual(2000);
      expect((await p.request('GET', '/api/v1/agents', { token: k2.key })).status).toBe(200);
      for (let i = 0; i < 10; i++) expect((await p.request('GET', '/api/v1/agents')).status).toBe(200);
      // After Retry-After the key passes again.
      await new Promise((r) => setTimeout(r, Number(limited.headers.get('retry-after')) * 1000));
      expect((await p.request('GET', '/api/v1/agents', { token: k1.key })).status).toBe(200);
    } finally {
      await p.close();
    }
  }, 60_000);
});
