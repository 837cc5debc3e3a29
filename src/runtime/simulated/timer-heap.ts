/** One scheduled callback in a TimerHeap. */
export interface TimerEntry {
  readonly dueMs: number;
  /** Insertion order: entries due at the same time fire first-in, first-out. */
  readonly seq: number;
  readonly fire: () => void;
  /** Cancelled, or already popped: either way it will not fire (again), and cancel is a no-op. */
  spent: boolean;
}

/**
 * A binary min-heap of callbacks ordered by due time, with lazy cancellation. The
 * simulated cluster keeps all its timers (container exits, start latencies, stop
 * grace periods, log-follow wake-ups) in one of these behind one real setTimeout,
 * instead of one Node timer per container: push and pop are O(log n), cancel is
 * O(1), and 100,000 pending exits cost about 100,000 small objects, nothing more.
 *
 * Pure data structure: it never reads the clock; the owner asks `popDue(nowMs)`.
 */
export class TimerHeap {
  private readonly heap: TimerEntry[] = [];
  private nextSeq = 0;
  private cancelledCount = 0;

  /** Live (not cancelled) entries. */
  get size(): number {
    return this.heap.length - this.cancelledCount;
  }

  push(dueMs: number, fire: () => void): TimerEntry {
    if (Number.isNaN(dueMs)) throw new RangeError('dueMs must be a number');
    const entry: TimerEntry = { dueMs, seq: this.nextSeq++, fire, spent: false };
    this.heap.push(entry);
    this.siftUp(this.heap.length - 1);
    return entry;
  }

  /**
   * Marks an entry dead; it is dropped when it reaches the top. Cancelling twice, or
   * cancelling an entry popDue already returned, is a no-op.
   */
  cancel(entry: TimerEntry): void {
    if (entry.spent) return;
    entry.spent = true;
    this.cancelledCount++;
    // Lazy deletion would let a churny workload (start, stop, start...) grow the heap
    // without bound: rebuild once dead entries are the majority.
    if (this.cancelledCount > 1024 && this.cancelledCount * 2 > this.heap.length) this.compact();
  }

  /** Due time of the earliest live entry, or undefined when empty. */
  peekDueMs(): number | undefined {
    this.dropCancelledTop();
    return this.heap[0]?.dueMs;
  }

  /** Removes and returns every live entry due at or before nowMs, earliest first. */
  popDue(nowMs: number): TimerEntry[] {
    const due: TimerEntry[] = [];
    for (;;) {
      this.dropCancelledTop();
      const top = this.heap[0];
      if (top === undefined || top.dueMs > nowMs) return due;
      this.removeTop();
      top.spent = true;
      due.push(top);
    }
  }

  clear(): void {
    this.heap.length = 0;
    this.cancelledCount = 0;
  }

  private dropCancelledTop(): void {
    while (this.heap[0]?.spent === true) {
      this.removeTop();
      this.cancelledCount--;
    }
  }

  private removeTop(): void {
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.siftDown(0);
    }
  }

  private compact(): void {
    const live = this.heap.filter((e) => !e.spent);
    this.heap.length = 0;
    this.heap.push(...live);
    this.cancelledCount = 0;
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private less(a: TimerEntry, b: TimerEntry): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const entry = heap[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!this.less(entry, parent)) break;
      heap[index] = parent;
      index = parentIndex;
    }
    heap[index] = entry;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const length = heap.length;
    const entry = heap[index]!;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && this.less(heap[right]!, heap[left]!) ? right : left;
      if (!this.less(heap[child]!, entry)) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = entry;
  }
}
