import { UnavailableError } from '../domain/errors.js';

/** Options of {@link CreateBackpressure}. */
export interface CreateBackpressureOptions {
  /** How far the controllers are behind: keys due and waiting (Bus.backlog). */
  backlog: () => Promise<number>;
  /** Creates wait while the backlog is at or above this; 0 turns waiting off. */
  limit: number;
  /**
   * Longest a create waits; then it goes ahead anyway, so that a controller that is down
   * (no leader during a fail-over) slows creates for a while but never stops them.
   */
  maxWaitMs: number;
  /** How often the backlog is read while creates wait, and how long one reading is trusted. @default 5 */
  pollMs?: number | undefined;
  /**
   * A reading that takes longer counts as failed (creates go ahead): a queue that does not
   * answer (Redis partitioned) must not hold creates past their max wait.
   * @default 250
   */
  readTimeoutMs?: number | undefined;
  /** Told how long each create that had to wait waited. */
  onWaited?: ((ms: number) => void) | undefined;
  /** Told when the backlog cannot be read (waiting creates then go ahead). */
  onError?: ((err: unknown) => void) | undefined;
}

interface Waiter {
  deadlineMs: number;
  startedMs: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** Set once answered (released, expired or aborted). */
  done: boolean;
  unlink?: (() => void) | undefined;
}

/**
 * Holds new agents at the API while the controllers are behind, as Kubernetes' API
 * Priority and Fairness queues requests rather than letting them pile up. Without it a
 * burst of creates takes the event loop from the reconciles (256 requests in flight against
 * 16 reconciles): agents were acknowledged quickly but waited in Pending for most of the
 * burst (100,000 creates: p50 create->Running 80 s). With it the acknowledgement waits
 * instead, and an agent starts soon after its create returns.
 *
 * Waiting creates are released in arrival order once the backlog has fallen to three
 * quarters of the limit, as many as fill it again. The limit is soft: creates let through
 * but not yet stored are not in the next reading. One reading of the backlog serves every
 * create for `pollMs`.
 */
export class CreateBackpressure {
  readonly #o: CreateBackpressureOptions;
  readonly #pollMs: number;
  readonly #waiters: Waiter[] = [];
  #head = 0;
  /** The last reading, plus the creates let through since (each enqueues one key). */
  #backlog = 0;
  #readAtMs = -Infinity;
  #reading: Promise<number> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** A release pass is running: no second one may let creates through on the same reading. */
  #releasing = false;
  #closed = false;

  constructor(options: CreateBackpressureOptions) {
    this.#o = options;
    this.#pollMs = Math.max(1, options.pollMs ?? 5);
  }

  /** Fails every waiting create and every later one with 503 SHUTTING_DOWN: the controllers are stopping, the backlog will not fall. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (let i = this.#head; i < this.#waiters.length; i++) this.#answer(this.#waiters[i]!, shuttingDown());
    this.#waiters.length = 0;
    this.#head = 0;
  }

  /** Creates waiting now. */
  waiting(): number {
    let n = 0;
    for (let i = this.#head; i < this.#waiters.length; i++) if (!this.#waiters[i]!.done) n++;
    return n;
  }

  /**
   * Resolves when the create may go ahead. `signal` is made only when the create has to
   * queue: in Node 20 an AbortController costs about 35 µs, a sixth of a whole create, and
   * nearly every create goes straight through.
   * @throws UnavailableError REQUEST_ABORTED when the signal aborts first (nothing was created)
   */
  async wait(signal?: AbortSignal | (() => AbortSignal)): Promise<void> {
    const { limit, maxWaitMs } = this.#o;
    if (limit <= 0) return;
    if (this.#closed) throw shuttingDown();
    if (this.#head === this.#waiters.length) {
      // Nobody queued ahead: go at once if there is room (a stale reading is refreshed).
      try {
        await this.#current();
      } catch (err) {
        this.#o.onError?.(err);
        return; // cannot tell how far behind: do not hold creates on a guess
      }
      if (this.#closed) throw shuttingDown();
      // The count, not the reading: creates that shared this reading and went first are in it.
      if (this.#backlog < limit && this.#head === this.#waiters.length) {
        this.#backlog++;
        return;
      }
    }
    const abort = typeof signal === 'function' ? signal() : signal;
    if (abort?.aborted) throw aborted();
    const now = Date.now();
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { deadlineMs: now + maxWaitMs, startedMs: now, resolve, reject, done: false };
      if (abort) {
        const onAbort = (): void => this.#answer(waiter, aborted());
        abort.addEventListener('abort', onAbort, { once: true });
        waiter.unlink = () => abort.removeEventListener('abort', onAbort);
      }
      this.#waiters.push(waiter);
      this.#arm();
    });
  }

  #current(): Promise<number> {
    if (Date.now() - this.#readAtMs < this.#pollMs) return Promise.resolve(this.#backlog);
    this.#reading ??= withTimeout(this.#o.backlog(), this.#o.readTimeoutMs ?? 250)
      .then((backlog) => {
        this.#backlog = backlog;
        this.#readAtMs = Date.now();
        return backlog;
      })
      .finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#releasing || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#release();
    }, this.#pollMs);
  }

  async #release(): Promise<void> {
    this.#releasing = true;
    try {
      await this.#releasePass();
    } finally {
      this.#releasing = false;
      if (this.#head < this.#waiters.length) this.#arm();
    }
  }

  async #releasePass(): Promise<void> {
    let room: number;
    try {
      await this.#current();
      // Hysteresis: wait until the backlog is a quarter below the limit, then let that
      // whole quarter through at once. Trickling 2-3 creates per reading (the controllers'
      // pace) made every store commit tiny and cost 15% of the throughput.
      const backlog = this.#backlog;
      room = backlog <= Math.floor((this.#o.limit * 3) / 4) ? this.#o.limit - backlog : 0;
    } catch (err) {
      this.#o.onError?.(err);
      room = Infinity; // cannot tell how far behind: do not hold creates on a guess
    }
    const now = Date.now();
    while (this.#head < this.#waiters.length) {
      const w = this.#waiters[this.#head]!;
      if (!w.done) {
        // Deadlines follow arrival order, so only the head can have expired.
        if (room <= 0 && w.deadlineMs > now) break;
        room--;
        this.#backlog++;
        this.#answer(w);
      }
      this.#head++;
    }
    if (this.#head === this.#waiters.length) {
      this.#waiters.length = 0;
      this.#head = 0;
    } else if (this.#head >= 1024) {
      this.#waiters.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #answer(w: Waiter, error?: unknown): void {
    if (w.done) return;
    w.done = true;
    w.unlink?.();
    if (error !== undefined) w.reject(error);
    else {
      this.#o.onWaited?.(Date.now() - w.startedMs);
      w.resolve();
    }
  }
}

/** `p`, or a rejection once `ms` have passed without an answer. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the work queue's backlog did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const shuttingDown = (): UnavailableError =>
  new UnavailableError('SHUTTING_DOWN', 'this replica is shutting down and its controllers have stopped; retry the create (another replica, or this one once restarted, will take it)');

const aborted = (): UnavailableError =>
  new UnavailableError('REQUEST_ABORTED', 'the request was abandoned while it waited for the controllers to catch up; no agent was created');
