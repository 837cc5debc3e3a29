import { silentLogger, type Logger } from '../domain/logger.js';
import type { AuditSink, EgressAuditRecord } from '../egress/egress-audit.js';
import type { Store } from '../store/store.js';

/** Options of StoreAuditSink. */
export interface StoreAuditSinkOptions {
  /** Records are written at least this often while any are buffered. @default 250 */
  flushIntervalMs?: number | undefined;
  /** A buffer this full is written at once. @default 200 */
  batchSize?: number | undefined;
  /** Records kept in memory while the store is failing; older ones are dropped (and counted). @default 10_000 */
  maxBuffered?: number | undefined;
  logger?: Logger | undefined;
}

/**
 * AuditSink that writes egress records to the store in batches: the proxy is on the data
 * path, so record() only buffers. A store outage drops the oldest records beyond
 * `maxBuffered` (and logs how many) rather than growing without bound.
 */
export class StoreAuditSink implements AuditSink {
  private buffer: EgressAuditRecord[] = [];
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private dropped = 0;
  private readonly batchSize: number;
  private readonly maxBuffered: number;
  private readonly logger: Logger;

  constructor(
    private readonly store: Store,
    options: StoreAuditSinkOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 200;
    this.maxBuffered = options.maxBuffered ?? 10_000;
    this.logger = options.logger ?? silentLogger;
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 250);
    this.timer.unref();
  }

  record(entry: EgressAuditRecord): void {
    this.buffer.push(entry);
    if (this.buffer.length > this.maxBuffered) {
      this.dropped += this.buffer.length - this.maxBuffered;
      this.buffer.splice(0, this.buffer.length - this.maxBuffered);
    }
    if (this.buffer.length >= this.batchSize) void this.flush();
  }

  /** Writes everything buffered so far; resolves when it is stored (or failed and re-buffered). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeBatch());
    return this.flushing;
  }

  /** Final flush; no timer afterwards. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writeBatch(): Promise<void> {
    if (this.dropped > 0) {
      this.logger.error({ dropped: this.dropped }, 'egress audit records dropped: the store did not keep up');
      this.dropped = 0;
    }
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.batchSize);
      try {
        await this.store.appendEgressAudit(batch);
      } catch (err) {
        this.buffer.unshift(...batch);
        this.logger.warn({ err, buffered: this.buffer.length }, 'egress audit write failed; will retry');
        return;
      }
    }
  }
}
