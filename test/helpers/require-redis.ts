import { Redis } from 'ioredis';
import { isCI } from './require-docker.js';

/** Redis the tests use: AGENT_PLATFORM_TEST_REDIS_URL, else the local default. */
export const testRedisUrl = process.env.AGENT_PLATFORM_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Whether Redis answers PING at `url`; the reason when it does not. Never throws. */
export async function probeRedis(url = testRedisUrl): Promise<{ ok: true } | { ok: false; reason: string }> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2_000, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    client.disconnect();
  }
}

/**
 * Gate for a test file that needs Redis: true when it answers; false (skip) when not
 * and CI is not set; throws when CI=true and Redis is missing, so the file fails.
 */
export async function requireRedis(url = testRedisUrl): Promise<boolean> {
  const probe = await probeRedis(url);
  if (probe.ok) return true;
  if (isCI) throw new Error(`CI=true but Redis is not reachable at ${url}: ${probe.reason}`);
  return false;
}

/** Deletes every key under `prefix` (SCAN, never KEYS: safe on a shared server). */
export async function deleteRedisPrefix(prefix: string, url = testRedisUrl): Promise<number> {
  const client = new Redis(url);
  try {
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await client.del(...keys);
    } while (cursor !== '0');
    return deleted;
  } finally {
    await client.quit();
  }
}
