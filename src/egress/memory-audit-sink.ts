import type { AuditSink, EgressAuditRecord } from './egress-audit.js';

interface Waiter {
  predicate: (entry: EgressAuditRecord) => boolean;
  resolve: (entry: EgressAuditRecord) => void;
}

/**
 * Keeps the last `capacity` audit records in memory (a ring buffer). For tests and for a
 * "recent egress" view; it loses everything on restart.
 */
export class MemoryAuditSink implements AuditSink {
  private readonly buffer: EgressAuditRecord[] = [];
  private start = 0;
  private waiters: Waiter[] = [];

  /** @param capacity records kept; older ones are dropped. @default 1000 */
  constructor(readonly capacity = 1000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  record(entry: EgressAuditRecord): void {
    if (this.buffer.length < this.capacity) this.buffer.push(entry);
    else {
      this.buffer[this.start] = entry;
      this.start = (this.start + 1) % this.capacity;
    }
    const ready = this.waiters.filter((w) => w.predicate(entry));
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const waiter of ready) waiter.resolve(entry);
  }

  /** Records kept, oldest first. */
  entries(): EgressAuditRecord[] {
    return [...this.buffer.slice(this.start), ...this.buffer.slice(0, this.start)];
  }

  clear(): void {
    this.buffer.length = 0;
    this.start = 0;
  }

  /**
   * Resolves with the first kept or future record matching `predicate`. Rejects with the
   * signal's reason when `signal` aborts (tests pass AbortSignal.timeout(ms)).
   */
  waitFor(predicate: (entry: EgressAuditRecord) => boolean, signal?: AbortSignal): Promise<EgressAuditRecord> {
    const existing = this.entries().find(predicate);
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (entry) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(entry);
        },
      };
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}
