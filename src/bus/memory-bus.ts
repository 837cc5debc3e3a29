import type { PlatformEvent } from '../domain/event.js';
import type { Bus } from './bus.js';

/**
 * In-process Bus: a deduplicating delayed work queue (like client-go's workqueue)
 * and synchronous event fan-out. One process only; the redis adapter shares both
 * across replicas.
 */
export class MemoryBus implements Bus {
  readonly kind = 'memory';
  /** key -> due time (ms). */
  private readonly waiting = new Map<string, number>();
  private readonly active = new Set<string>();
  /** Keys enqueued while their handler ran; requeued when it finishes. */
  private readonly dirty = new Map<string, number>();
  private readonly listeners = new Set<(e: PlatformEvent) => void>();
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  enqueue(key: string, delayMs = 0): void {
    const due = Date.now() + Math.max(0, delayMs);
    if (this.active.has(key)) {
      const prev = this.dirty.get(key);
      if (prev === undefined || due < prev) this.dirty.set(key, due);
      return;
    }
    const prev = this.waiting.get(key);
    if (prev === undefined || due < prev) this.waiting.set(key, due);
    this.poke();
  }

  depth(): number {
    return this.waiting.size + this.dirty.size;
  }

  consume(handler: (key: string, signal: AbortSignal) => Promise<void>, concurrency: number, signal: AbortSignal): void {
    let running = 0;
    const pump = (): void => {
      if (signal.aborted) return;
      clearTimeout(this.timer);
      this.timer = undefined;
      const now = Date.now();
      let nextDue = Infinity;
      for (const [key, due] of this.waiting) {
        if (running >= concurrency) break;
        if (due > now) {
          nextDue = Math.min(nextDue, due);
          continue;
        }
        this.waiting.delete(key);
        this.active.add(key);
        running++;
        handler(key, signal)
          .catch(() => undefined)
          .finally(() => {
            running--;
            this.active.delete(key);
            const again = this.dirty.get(key);
            if (again !== undefined) {
              this.dirty.delete(key);
              const prev = this.waiting.get(key);
              if (prev === undefined || again < prev) this.waiting.set(key, again);
            }
            pump();
          });
      }
      if (running < concurrency && nextDue !== Infinity) {
        this.timer = setTimeout(pump, Math.max(1, nextDue - Date.now()));
        this.timer.unref();
      }
    };
    this.wake = () => queueMicrotask(pump);
    signal.addEventListener('abort', () => {
      clearTimeout(this.timer);
      this.wake = undefined;
    });
    pump();
  }

  private poke(): void {
    this.wake?.();
  }

  publish(event: PlatformEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken subscriber must not break the publisher or other subscribers.
      }
    }
  }

  subscribe(listener: (event: PlatformEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.waiting.clear();
    this.listeners.clear();
  }
}
