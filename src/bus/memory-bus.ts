import type { PlatformEvent } from '../domain/event.js';
import type { Bus } from './bus.js';

/** A queued due time of a key; stale once the key's due time in `waiting` differs. */
interface Entry {
  key: string;
  dueMs: number;
  /** Enqueue order: keys due at the same ms run in the order they were queued. */
  seq: number;
}

const before = (a: Entry, b: Entry): boolean => a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);

/**
 * In-process Bus: a deduplicating delayed work queue (like client-go's workqueue)
 * and synchronous event fan-out. One process only; the redis adapter shares both
 * across replicas.
 *
 * `waiting` (key -> due time) is the truth and dedupes; keys due now sit in a FIFO and
 * delayed keys in a min-heap by due time, so handing out a key costs O(log n) however
 * many wait (100,000 agents created at once queue 100,000 keys). Moving a key's due time
 * earlier pushes a second entry instead of searching the old one: an entry whose due
 * time no longer matches `waiting` is stale and skipped when it surfaces.
 */
export class MemoryBus implements Bus {
  readonly kind = 'memory';
  /** key -> due time (ms). */
  private readonly waiting = new Map<string, number>();
  /** Entries due when queued, oldest first; `readyHead` is the index of the first live one. */
  private ready: Entry[] = [];
  private readyHead = 0;
  /** Entries due later: a binary min-heap by (dueMs, seq). */
  private readonly delayed: Entry[] = [];
  private seq = 0;
  private readonly active = new Set<string>();
  /** Keys enqueued while their handler ran; requeued when it finishes. */
  private readonly dirty = new Map<string, number>();
  private readonly listeners = new Set<(e: PlatformEvent) => void>();
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Due time the timer is set for (Infinity: no timer). */
  private timerDueMs = Infinity;

  enqueue(key: string, delayMs = 0): void {
    const now = Date.now();
    const due = now + Math.max(0, delayMs);
    if (this.active.has(key)) {
      const prev = this.dirty.get(key);
      if (prev === undefined || due < prev) this.dirty.set(key, due);
      return;
    }
    this.add(key, due, now);
    this.wake?.();
  }

  depth(): number {
    return this.waiting.size + this.dirty.size;
  }

  async backlog(): Promise<number> {
    // Every ready entry is live (a key due now cannot be moved earlier). Of the delayed
    // heap only the due part is walked: a subtree whose root is not due holds nothing due.
    const now = Date.now();
    let due = this.ready.length - this.readyHead;
    const stack = this.delayed.length > 0 ? [0] : [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      const e = this.delayed[i];
      if (e === undefined || e.dueMs > now) continue;
      if (this.waiting.get(e.key) === e.dueMs) due++;
      stack.push(2 * i + 1, 2 * i + 2);
    }
    return due;
  }

  consume(handler: (key: string, signal: AbortSignal) => Promise<void>, concurrency: number, signal: AbortSignal): void {
    let running = 0;
    let pumpQueued = false;
    const pump = (): void => {
      pumpQueued = false;
      if (signal.aborted) return;
      const now = Date.now();
      while (running < concurrency) {
        const key = this.takeDue(now);
        if (key === undefined) break;
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
              this.add(key, again, Date.now());
            }
            pump();
          });
      }
      if (running < concurrency) this.armTimer(pump);
    };
    // A burst of enqueues in one turn (an API batch) wakes the consumer once.
    this.wake = () => {
      if (pumpQueued) return;
      pumpQueued = true;
      queueMicrotask(pump);
    };
    signal.addEventListener('abort', () => {
      this.clearTimer();
      this.wake = undefined;
    });
    pump();
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
    this.clearTimer();
    this.waiting.clear();
    this.ready = [];
    this.readyHead = 0;
    this.delayed.length = 0;
    this.listeners.clear();
  }

  /** Queues `key` at `dueMs` unless it already waits with an earlier (or equal) due time. */
  private add(key: string, dueMs: number, nowMs: number): void {
    const prev = this.waiting.get(key);
    if (prev !== undefined && prev <= dueMs) return;
    this.waiting.set(key, dueMs);
    const entry: Entry = { key, dueMs, seq: this.seq++ };
    if (dueMs <= nowMs) this.ready.push(entry);
    else this.heapPush(entry);
  }

  /** Removes and returns the key due first if it is due at `nowMs`, skipping stale entries. */
  private takeDue(nowMs: number): string | undefined {
    for (;;) {
      const r = this.readyHead < this.ready.length ? this.ready[this.readyHead] : undefined;
      const d = this.delayed[0];
      const from = r !== undefined && (d === undefined || before(r, d)) ? 'ready' : d !== undefined ? 'delayed' : undefined;
      if (from === undefined) return undefined;
      const entry = from === 'ready' ? r! : d!;
      if (entry.dueMs > nowMs) return undefined;
      if (from === 'ready') this.shiftReady();
      else this.heapPop();
      if (this.waiting.get(entry.key) !== entry.dueMs) continue; // stale: moved earlier or already run
      this.waiting.delete(entry.key);
      return entry.key;
    }
  }

  private shiftReady(): void {
    this.readyHead++;
    // Compact once the consumed prefix is large, so the array does not grow forever.
    if (this.readyHead >= 1024 && this.readyHead * 2 >= this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
  }

  /** Sets the timer for the earliest delayed key, unless one is set for that time or earlier. */
  private armTimer(pump: () => void): void {
    // Stale entries at the top would only wake the consumer early for nothing.
    while (this.delayed.length > 0 && this.waiting.get(this.delayed[0]!.key) !== this.delayed[0]!.dueMs) this.heapPop();
    const next = this.delayed[0];
    if (next === undefined || next.dueMs >= this.timerDueMs) return;
    this.clearTimer();
    this.timerDueMs = next.dueMs;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerDueMs = Infinity;
        pump();
      },
      Math.max(1, next.dueMs - Date.now()),
    );
    this.timer.unref();
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDueMs = Infinity;
  }

  private heapPush(e: Entry): void {
    const h = this.delayed;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  private heapPop(): void {
    const h = this.delayed;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && before(h[r]!, h[l]!) ? r : l;
      if (!before(h[child]!, last)) break;
      h[i] = h[child]!;
      i = child;
    }
    h[i] = last;
  }
}
