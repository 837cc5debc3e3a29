import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { PlatformEvent } from '../domain/event.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { Bus } from './bus.js';
import { RedisLuaScript } from './redis-lua-script.js';
import { BACKLOG_SCRIPT, CLAIM_SCRIPT, COMPLETE_SCRIPT, ENQUEUE_SCRIPT, RENEW_SCRIPT } from './redis-scripts.js';

/** Options of RedisBus; durations in ms. */
export interface RedisBusOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  /** Prefix of every key and channel; replicas that share work use the same one. @default "agent-platform:" */
  prefix?: string | undefined;
  /**
   * How long a claimed key stays reserved for its consumer. The consumer renews its
   * reservations every third of this while the handler runs; a consumer that dies (kill
   * -9, lost network) stops renewing, and its keys become due again after at most this
   * long. Shorter: faster recovery after a crash; too short: a consumer stalled longer
   * than this (GC pause, blocked event loop) loses a key another consumer then runs too.
   * @default 30_000
   */
  claimTtlMs?: number | undefined;
  /** How often the cached value of depth() is refreshed. @default 1_000 */
  depthRefreshMs?: number | undefined;
  /**
   * Consumers poll this often even without a wake-up message: pub/sub is at-most-once,
   * and messages sent while the subscriber reconnects are lost. @default 1_000
   */
  pollIntervalMs?: number | undefined;
  /** How long close() waits for running handlers to finish and hand back their keys. @default 5_000 */
  closeGraceMs?: number | undefined;
  logger?: Logger | undefined;
}

/**
 * Bus shared by several replicas through Redis.
 *
 * Work queue: the same semantics as MemoryBus (dedupe, delays where the earliest due
 * time wins, a key never handled twice at once, a key enqueued while it runs is handled
 * again afterwards), kept in Redis sorted sets and changed only by Lua scripts (see
 * redis-scripts.ts), so any replica may enqueue and any may consume. A consumer reserves
 * keys with a renewed lease; the keys of a consumer that died come back after
 * `claimTtlMs`. Consumers wake on a pub/sub message per enqueue, on a timer for the
 * next delayed key, and on a slow poll in case a message was lost.
 *
 * Events: publish() goes to a Redis channel and every subscribe() listener of every
 * replica (this one included) gets each event once, when it comes back from Redis.
 * Delivery is at most once: events published while a subscriber is disconnected are
 * lost to it (stored events can be replayed from the store by id).
 *
 * depth() must answer synchronously (the port is sync, for metrics): it returns a
 * cached count refreshed every `depthRefreshMs`, so it lags by up to that long;
 * refreshDepth() gives the current value.
 */
export class RedisBus implements Bus {
  readonly kind = 'redis';
  readonly prefix: string;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly keys: { queue: string; dirty: string; active: string; holder: string };
  private readonly wakeChannel: string;
  private readonly eventChannel: string;
  private readonly claimTtlMs: number;
  private readonly pollIntervalMs: number;
  private readonly closeGraceMs: number;
  private readonly logger: Logger;
  private readonly listeners = new Set<(e: PlatformEvent) => void>();
  private readonly wakers = new Set<() => void>();
  /** Every running handler of every consumer of this instance, for close(). */
  private readonly running = new Set<Promise<void>>();
  private readonly subscribed: Promise<void>;
  private readonly depthTimer: NodeJS.Timeout;
  /** Enqueues sent and not yet answered (refreshDepth reads after them). */
  private readonly pendingWrites = new Set<Promise<void>>();
  private cachedDepth = 0;
  private closed = false;

  private static readonly enqueueScript = new RedisLuaScript(ENQUEUE_SCRIPT);
  private static readonly claimScript = new RedisLuaScript(CLAIM_SCRIPT);
  private static readonly completeScript = new RedisLuaScript(COMPLETE_SCRIPT);
  private static readonly renewScript = new RedisLuaScript(RENEW_SCRIPT);
  private static readonly backlogScript = new RedisLuaScript(BACKLOG_SCRIPT);

  constructor(options: RedisBusOptions) {
    this.prefix = options.prefix ?? 'agent-platform:';
    this.claimTtlMs = options.claimTtlMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.closeGraceMs = options.closeGraceMs ?? 5_000;
    this.logger = options.logger ?? silentLogger;
    this.keys = { queue: `${this.prefix}queue`, dirty: `${this.prefix}dirty`, active: `${this.prefix}active`, holder: `${this.prefix}holder` };
    this.wakeChannel = `${this.prefix}wake`;
    this.eventChannel = `${this.prefix}events`;
    this.cmd = new Redis(options.url, { lazyConnect: false });
    // A connection in subscriber mode can run no other command: pub/sub gets its own.
    this.sub = new Redis(options.url, { lazyConnect: false });
    for (const [name, conn] of [['commands', this.cmd], ['subscriber', this.sub]] as const) {
      conn.on('error', (err: unknown) => this.logger.warn({ err, connection: name }, 'redis connection error'));
    }
    this.sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    this.subscribed = this.sub.subscribe(this.wakeChannel, this.eventChannel).then(() => undefined);
    // Not awaited here: ready() surfaces the failure; this keeps it from being unhandled.
    this.subscribed.catch(() => undefined);
    this.depthTimer = setInterval(() => {
      this.refreshDepth().catch((err: unknown) => this.logger.debug({ err }, 'queue depth refresh failed'));
    }, options.depthRefreshMs ?? 1_000);
    this.depthTimer.unref();
  }

  /**
   * Resolves once the subscriptions are in place: an event published by anyone after
   * this reaches this instance's listeners. Rejects when Redis cannot be reached.
   */
  async ready(): Promise<void> {
    await this.subscribed;
    await RedisLuaScript.loadAll(this.cmd, [RedisBus.enqueueScript, RedisBus.claimScript, RedisBus.completeScript, RedisBus.renewScript, RedisBus.backlogScript]);
    await this.refreshDepth();
  }

  enqueue(key: string, delayMs = 0): void {
    if (this.closed) return;
    const pending = RedisBus.enqueueScript
      .run(this.cmd, [this.keys.queue, this.keys.dirty, this.keys.active], [key, Math.max(0, Math.round(delayMs)), this.wakeChannel])
      .then(
        () => undefined,
        // The port is fire-and-forget; a lost enqueue is repaired by the controller's resync.
        (err: unknown) => this.logger.warn({ err, key }, 'enqueue to redis failed'),
      )
      .finally(() => this.pendingWrites.delete(pending));
    this.pendingWrites.add(pending);
  }

  depth(): number {
    return this.cachedDepth;
  }

  async backlog(): Promise<number> {
    if (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites]);
    // Due times are the server's clock (TIME), so "due now" is judged there too.
    return Number(await RedisBus.backlogScript.run(this.cmd, [this.keys.queue], []));
  }

  /**
   * Keys waiting (due or delayed, including those enqueued while running), read now,
   * after this instance's enqueues so far have landed.
   */
  async refreshDepth(): Promise<number> {
    if (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites]);
    const [waiting, dirty] = await Promise.all([this.cmd.zcard(this.keys.queue), this.cmd.zcard(this.keys.dirty)]);
    this.cachedDepth = waiting + dirty;
    return this.cachedDepth;
  }

  consume(handler: (key: string, signal: AbortSignal) => Promise<void>, concurrency: number, signal: AbortSignal): void {
    const token = randomUUID();
    const inflight = new Set<string>();
    let timer: NodeJS.Timeout | undefined;
    let pumping = false;
    let again = false;

    const run = (key: string): void => {
      inflight.add(key);
      const done = handler(key, signal)
        .catch((err: unknown) => this.logger.warn({ err, key }, 'bus handler failed'))
        .then(() => this.complete(key, token, false))
        .finally(() => {
          inflight.delete(key);
          this.running.delete(done);
          void pump();
        });
      this.running.add(done);
    };

    const pump = async (): Promise<void> => {
      if (pumping) {
        again = true;
        return;
      }
      pumping = true;
      try {
        do {
          again = false;
          if (signal.aborted || this.closed) return;
          clearTimeout(timer);
          const free = concurrency - inflight.size;
          const [waitMs, keys] = await this.claim(token, free);
          if (signal.aborted || this.closed) {
            // Claimed after the consumer stopped: give the keys straight back.
            await Promise.all(keys.map((k) => this.complete(k, token, true)));
            return;
          }
          for (const key of keys) run(key);
          const room = free - keys.length > 0;
          const delay = room && waitMs >= 0 ? Math.min(waitMs, this.pollIntervalMs) : this.pollIntervalMs;
          timer = setTimeout(() => void pump(), Math.max(1, delay));
          timer.unref();
        } while (again);
      } catch (err) {
        this.logger.warn({ err }, 'claiming work from redis failed; retrying');
        clearTimeout(timer);
        if (!signal.aborted && !this.closed) {
          timer = setTimeout(() => void pump(), this.pollIntervalMs);
          timer.unref();
        }
      } finally {
        pumping = false;
      }
    };

    // Reservations outlive a slow handler only while renewed; they lapse on their own
    // when this process dies, which is the point.
    const renewTimer = setInterval(
      () => {
        if (this.closed || (inflight.size === 0 && signal.aborted)) {
          clearInterval(renewTimer);
          return;
        }
        if (inflight.size === 0) return;
        RedisBus.renewScript
          .run(this.cmd, [this.keys.active, this.keys.holder], [token, this.claimTtlMs, ...inflight])
          .catch((err: unknown) => this.logger.warn({ err }, 'renewing work reservations failed'));
      },
      Math.max(50, Math.floor(this.claimTtlMs / 3)),
    );
    renewTimer.unref();

    const wake = (): void => void pump();
    this.wakers.add(wake);
    signal.addEventListener(
      'abort',
      () => {
        this.wakers.delete(wake);
        clearTimeout(timer);
        if (inflight.size === 0) clearInterval(renewTimer);
      },
      { once: true },
    );
    void pump();
  }

  publish(event: PlatformEvent): void {
    if (this.closed) return;
    this.cmd.publish(this.eventChannel, JSON.stringify(event)).catch((err: unknown) => this.logger.warn({ err, reason: event.reason }, 'publishing event to redis failed'));
  }

  subscribe(listener: (event: PlatformEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.depthTimer);
    this.wakers.clear();
    // Let running handlers hand their keys back (a clean stop), but not forever: keys of
    // a handler still running afterwards come back when the reservation lapses.
    if (this.running.size > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.running]), new Promise<void>((r) => (t = setTimeout(r, this.closeGraceMs)))]);
      clearTimeout(t);
    }
    this.listeners.clear();
    await Promise.all([this.cmd, this.sub].map((c) => c.quit().then(() => undefined, () => c.disconnect())));
  }

  private async claim(token: string, max: number): Promise<[number, string[]]> {
    const reply = (await RedisBus.claimScript.run(
      this.cmd,
      [this.keys.queue, this.keys.dirty, this.keys.active, this.keys.holder],
      [token, Math.max(0, max), this.claimTtlMs],
    )) as [number, ...string[]];
    const [waitMs, ...keys] = reply;
    return [Number(waitMs), keys];
  }

  private async complete(key: string, token: string, requeue: boolean): Promise<void> {
    try {
      const mine = await RedisBus.completeScript.run(
        this.cmd,
        [this.keys.queue, this.keys.dirty, this.keys.active, this.keys.holder],
        [key, token, this.wakeChannel, requeue ? '1' : '0'],
      );
      if (Number(mine) !== 1) this.logger.warn({ key }, 'work reservation had lapsed before the handler finished; another consumer may have run the key too');
    } catch (err) {
      // The reservation lapses after claimTtlMs and the key comes back then.
      this.logger.warn({ err, key }, 'completing work in redis failed');
    }
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.wakeChannel) {
      for (const wake of this.wakers) wake();
      return;
    }
    if (channel !== this.eventChannel) return;
    let event: PlatformEvent;
    try {
      event = JSON.parse(message) as PlatformEvent;
    } catch (err) {
      this.logger.warn({ err }, 'ignoring an event that is not JSON');
      return;
    }
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken subscriber must not break the others.
      }
    }
  }
}
