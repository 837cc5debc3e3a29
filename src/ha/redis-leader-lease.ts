import { Redis } from 'ioredis';
import { silentLogger, type Logger } from '../domain/logger.js';
import { RedisLuaScript } from '../bus/redis-lua-script.js';
import type { LeaderLease, LeaseHolder } from './leader-lease.js';

/** Options of RedisLeaderLease. */
export interface RedisLeaderLeaseOptions {
  url: string;
  /** Key prefix, shared by the replicas of one installation. @default "agent-platform:" */
  prefix?: string | undefined;
  /** @default 5_000 */
  ttlMs?: number | undefined;
  logger?: Logger | undefined;
}

/**
 * KEYS: lease, epoch. ARGV: replica id, ttl ms. SET NX PX with a token from INCR, in
 * one step: the counter never goes back, so tokens grow with every acquisition.
 */
const ACQUIRE = `if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2], 'NX')
return token`;

/** KEYS: lease. ARGV: expected value, ttl ms. Extends only our own lease. */
const RENEW = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/** KEYS: lease. ARGV: expected value. Deletes only our own lease. */
const RELEASE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

/** KEYS: epoch. ARGV: at least. Raises the fencing counter, never lowers it. */
const ADVANCE = `local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`;

/**
 * Leader lease in Redis: the key `<prefix>leader` holds "<token> <replicaId>" with a
 * PX expiry; `<prefix>leader:epoch` is the fencing counter (INCR). Renew and release
 * compare the whole value in Lua, so a replica whose lease lapsed and was taken over
 * can neither extend nor delete the new holder's lease.
 *
 * One Redis (no Redlock): if that Redis fails over to a replica that missed the last
 * write, two holders are possible for up to one TTL; the fencing token is what lets a
 * store reject the older one.
 */
export class RedisLeaderLease implements LeaderLease {
  readonly kind = 'redis';
  readonly ttlMs: number;
  private readonly redis: Redis;
  private readonly leaseKey: string;
  private readonly epochKey: string;
  private static readonly acquireScript = new RedisLuaScript(ACQUIRE);
  private static readonly renewScript = new RedisLuaScript(RENEW);
  private static readonly releaseScript = new RedisLuaScript(RELEASE);
  private static readonly advanceScript = new RedisLuaScript(ADVANCE);

  constructor(options: RedisLeaderLeaseOptions) {
    const prefix = options.prefix ?? 'agent-platform:';
    this.ttlMs = options.ttlMs ?? 5_000;
    this.leaseKey = `${prefix}leader`;
    this.epochKey = `${prefix}leader:epoch`;
    const logger = options.logger ?? silentLogger;
    // A renewal that hangs is as bad as one that fails: it must give up well within the TTL.
    this.redis = new Redis(options.url, { commandTimeout: Math.max(200, Math.floor(this.ttlMs / 3)), maxRetriesPerRequest: 1 });
    this.redis.on('error', (err: unknown) => logger.warn({ err }, 'redis connection error (leader lease)'));
  }

  async acquire(replicaId: string, signal?: AbortSignal): Promise<number | undefined> {
    signal?.throwIfAborted();
    const token = await RedisLeaderLease.acquireScript.run(this.redis, [this.leaseKey, this.epochKey], [replicaId, this.ttlMs]);
    return token === null || token === undefined ? undefined : Number(token);
  }

  async renew(replicaId: string, fencingToken: number, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted();
    return Number(await RedisLeaderLease.renewScript.run(this.redis, [this.leaseKey], [`${fencingToken} ${replicaId}`, this.ttlMs])) === 1;
  }

  async release(replicaId: string, fencingToken: number): Promise<void> {
    await RedisLeaderLease.releaseScript.run(this.redis, [this.leaseKey], [`${fencingToken} ${replicaId}`]);
  }

  async advanceFencingToken(atLeast: number): Promise<void> {
    await RedisLeaderLease.advanceScript.run(this.redis, [this.epochKey], [atLeast]);
  }

  async holder(signal?: AbortSignal): Promise<LeaseHolder | undefined> {
    signal?.throwIfAborted();
    const value = await this.redis.get(this.leaseKey);
    if (value === null) return undefined;
    const space = value.indexOf(' ');
    return { fencingToken: Number(value.slice(0, space)), replicaId: value.slice(space + 1) };
  }

  async close(): Promise<void> {
    await this.redis.quit().then(
      () => undefined,
      () => this.redis.disconnect(),
    );
  }
}
