import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run with EVALSHA, falling back to EVAL once when the server does not
 * know it yet (first use, or after a restart or SCRIPT FLUSH): the script body crosses
 * the wire only then.
 */
export class RedisLuaScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /**
   * Loads scripts ahead of use: the EVAL fallback re-sends a script after the NOSCRIPT
   * answer, which lets commands sent meanwhile overtake it; loaded scripts keep order.
   */
  static async loadAll(redis: Redis, scripts: readonly RedisLuaScript[]): Promise<void> {
    await Promise.all(scripts.map((s) => redis.script('LOAD', s.source)));
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
