import { monitorEventLoopDelay } from 'node:perf_hooks';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { LeaderLease } from './leader-lease.js';

/** Where a new leader records its fencing token (Store.recordFencingToken). */
export interface FencingTokenRecorder {
  /** Raises the recorded token to `fencingToken`; returns the token recorded now (larger: a newer leader's). */
  recordFencingToken(fencingToken: number): Promise<number>;
}

/** Options of LeaderElector; durations in ms. */
export interface LeaderElectorOptions {
  lease: LeaderLease;
  /**
   * Records each term's token before `lead` runs, so that the fenced writes of every
   * earlier leader are refused from then on. A recorder that answers a larger token
   * (a newer leader recorded first, or the lease's counter went back) ends the term
   * before `lead` runs, and the lease's counter is advanced past it, so that the next
   * campaign gets a token the recorder accepts. A recorder that fails ends the term too.
   * @default undefined (tokens are not recorded: nothing is fenced)
   */
  fence?: FencingTokenRecorder | undefined;
  /**
   * How long a term waits for `fence` to record its token before it ends and the replica
   * campaigns again: a record waits for the fenced writes in flight, and one stalled
   * (a paused old leader) must not keep this replica holding the lease without leading.
   * @default lease.ttlMs
   */
  recordTimeoutMs?: number | undefined;
  /** This replica's id, unique among the replicas (hostname-pid by default in config). */
  replicaId: string;
  /**
   * Runs when this replica becomes leader, with the term's fencing token. `signal` aborts
   * the moment the lease is lost or the elector stops, and whatever was started must stop
   * with it. May return at once (having started background work) or run until the signal
   * aborts; a throw ends the term and gives the lease up. `stepDown` ends this term from
   * inside (a write was fenced out: another replica leads); no-op once the term ended.
   * After either, the replica campaigns again like any follower.
   */
  lead: (signal: AbortSignal, fencingToken: number, stepDown: (reason: string) => void) => Promise<void> | void;
  /** How often the leader renews. @default lease.ttlMs / 3 */
  renewIntervalMs?: number | undefined;
  /** How often a follower tries to take the lease. @default lease.ttlMs / 4 */
  retryIntervalMs?: number | undefined;
  /**
   * The leader treats its lease as lost this long before it would lapse in the backend,
   * measured from when the last successful renewal was sent: it stops before anyone else
   * can start. Costs that much of each TTL; buys room for slow clocks and slow stops.
   * @default lease.ttlMs / 5
   */
  safetyMarginMs?: number | undefined;
  logger?: Logger | undefined;
}

/** The current term, while this replica leads. */
export interface LeaderTerm {
  fencingToken: number;
  /** When this replica became leader (ms epoch). */
  sinceMs: number;
}

/**
 * Runs `lead` on exactly one replica at a time: campaigns for the lease, renews it while
 * leading, and aborts the term's signal as soon as leadership is in doubt: a renewal
 * answered "not yours", or no successful renewal for ttl - safetyMargin (Redis
 * unreachable, event loop stalled). A follower takes over at most one TTL plus one retry
 * interval after the leader dies.
 *
 * Stopping this alone does not fence: a deposed leader (paused past its TTL, say) may
 * still write when the next one has started. With `fence`, each term's token is recorded
 * in the store first, and the controller's writes carry it: the store refuses those of
 * older terms (docs/architecture.md, "Leader fencing", says which writes are fenced).
 */
export class LeaderElector {
  private readonly renewIntervalMs: number;
  private readonly retryIntervalMs: number;
  private readonly safetyMarginMs: number;
  private readonly recordTimeoutMs: number;
  private readonly logger: Logger;
  private readonly stopping = new AbortController();
  private campaignLoop: Promise<void> | undefined;
  private current: LeaderTerm | undefined;

  constructor(private readonly o: LeaderElectorOptions) {
    const ttl = o.lease.ttlMs;
    this.renewIntervalMs = o.renewIntervalMs ?? Math.max(50, Math.floor(ttl / 3));
    this.retryIntervalMs = o.retryIntervalMs ?? Math.max(50, Math.floor(ttl / 4));
    this.safetyMarginMs = o.safetyMarginMs ?? Math.floor(ttl / 5);
    this.recordTimeoutMs = o.recordTimeoutMs ?? ttl;
    if (this.renewIntervalMs >= ttl - this.safetyMarginMs) {
      throw new RangeError(`renewIntervalMs (${this.renewIntervalMs}) must be below ttlMs - safetyMarginMs (${ttl - this.safetyMarginMs})`);
    }
    this.logger = o.logger ?? silentLogger;
  }

  get replicaId(): string {
    return this.o.replicaId;
  }

  /** Starts campaigning in the background; idempotent. */
  start(): void {
    this.campaignLoop ??= this.campaign();
  }

  /** True while a term leads: from when its token is recorded (with `fence`) until it ends. */
  isLeader(): boolean {
    return this.current !== undefined;
  }

  /** The current term, or undefined while following. */
  term(): LeaderTerm | undefined {
    return this.current ? { ...this.current } : undefined;
  }

  /** Ends the term (if leading), waits for `lead` to return, gives the lease up. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.campaignLoop;
  }

  private async campaign(): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      const sentAtMs = Date.now();
      let token: number | undefined;
      try {
        // Raced with stop(): a backend that hangs must not keep stop() waiting.
        token = await untilAborted(this.o.lease.acquire(this.o.replicaId, stop), stop);
        if (token !== undefined && stop.aborted) {
          const won = token;
          await untilAborted(this.o.lease.release(this.o.replicaId, won), AbortSignal.timeout(this.o.lease.ttlMs)).catch(() => undefined);
          return;
        }
      } catch (err) {
        if (!stop.aborted) this.logger.warn({ err }, 'could not reach the leader lease; retrying');
      }
      if (token !== undefined) await this.hold(token, sentAtMs);
      await sleep(this.retryIntervalMs, stop);
    }
  }

  private async hold(fencingToken: number, acquiredAtMs: number): Promise<void> {
    const { lease, replicaId } = this.o;
    const ttl = lease.ttlMs;
    const term = new AbortController();
    let lastRenewSentMs = acquiredAtMs;
    const loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
    let renewInFlightSinceMs: number | undefined;
    const endTerm = (why: string, warn: boolean): void => {
      if (term.signal.aborted) return;
      this.current = undefined;
      const now = Date.now();
      // A missed deadline is most often this process stalling (CPU starvation, GC), not
      // Redis: the longest event-loop delay of the term says which.
      const timing = {
        msSinceLastRenewalSent: now - lastRenewSentMs,
        ...(renewInFlightSinceMs !== undefined ? { renewalPendingMs: now - renewInFlightSinceMs } : {}),
        maxEventLoopDelayMs: Math.round(loopDelay.max / 1e6),
      };
      (warn ? this.logger.warn : this.logger.info).call(this.logger, { fencingToken, replicaId, ...timing }, `leadership ends: ${why}`);
      term.abort();
    };
    const onStop = (): void => endTerm('stopping', false);
    this.stopping.signal.addEventListener('abort', onStop, { once: true });

    let watchdog: NodeJS.Timeout | undefined;
    // Valid until the lease could lapse in the backend (counted from when the request that
    // set its expiry was sent), minus the margin.
    const armWatchdog = (validFromMs: number): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => endTerm('lease not renewed in time', true), Math.max(0, validFromMs + ttl - this.safetyMarginMs - Date.now()));
      watchdog.unref();
    };
    armWatchdog(acquiredAtMs);

    const stepDown = (reason: string): void => endTerm(`stepped down: ${reason}`, true);
    const leading = (async () => {
      try {
        const { fence } = this.o;
        if (fence) {
          // Raced with the term, and the term ends if the record takes longer than
          // recordTimeoutMs: a store that hangs (or waits on a stalled old leader's write)
          // must not leave this replica holding the lease without leading.
          const recordTimer = setTimeout(() => endTerm(`recording fencing token ${fencingToken} took longer than ${this.recordTimeoutMs} ms; campaigning again`, true), this.recordTimeoutMs);
          recordTimer.unref();
          let recorded: number | undefined;
          try {
            recorded = await untilAborted(fence.recordFencingToken(fencingToken), term.signal);
          } finally {
            clearTimeout(recordTimer);
          }
          if (recorded === undefined) return;
          if (recorded > fencingToken) {
            // Raced with the term too: a Redis that hangs must not keep hold() or stop() waiting.
            await untilAborted(lease.advanceFencingToken(recorded), term.signal);
            throw new Error(`the store has recorded fencing token ${recorded}, newer than this term's ${fencingToken}: not leading with it; the lease counter is advanced and the next campaign gets a newer token`);
          }
        }
        if (term.signal.aborted) return;
        // Leader from here, not from winning the lease: work gated on isLeader() (the meter,
        // the node evictor) must not run before the earlier leaders are fenced out.
        this.current = { fencingToken, sinceMs: Date.now() };
        this.logger.info({ fencingToken, replicaId }, 'became leader');
        await this.o.lead(term.signal, fencingToken, stepDown);
      } catch (err) {
        if (!term.signal.aborted) {
          this.logger.error({ err, fencingToken }, 'leading failed');
          endTerm('lead failed', true);
        }
      }
    })();

    while (!term.signal.aborted) {
      await sleep(this.renewIntervalMs, term.signal);
      if (term.signal.aborted) break;
      const sentAtMs = Date.now();
      renewInFlightSinceMs = sentAtMs;
      try {
        // Raced with the term: a renewal that hangs must not keep this replica leading.
        const ours = await untilAborted(lease.renew(replicaId, fencingToken, term.signal), term.signal);
        if (ours === false) endTerm('the lease was taken over', true);
        else if (!term.signal.aborted) {
          lastRenewSentMs = sentAtMs;
          armWatchdog(sentAtMs);
        }
      } catch (err) {
        // Keep trying until the watchdog says the lease may have lapsed.
        if (!term.signal.aborted) this.logger.warn({ err, fencingToken }, 'renewing the leader lease failed; retrying');
      } finally {
        renewInFlightSinceMs = undefined;
      }
    }
    clearTimeout(watchdog);
    loopDelay.disable();
    this.current = undefined;
    this.stopping.signal.removeEventListener('abort', onStop);
    await leading;
    // Compares the token: a lease already taken over is left alone. Giving it up on a
    // clean stop lets the next leader start now instead of after one TTL.
    const released = lease.release(replicaId, fencingToken).catch((err: unknown) => this.logger.warn({ err }, 'releasing the leader lease failed'));
    await untilAborted(released, AbortSignal.timeout(ttl));
  }
}

/** The promise's value, or undefined as soon as the signal aborts (the promise is left to settle). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.resolve(undefined);
  }
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
