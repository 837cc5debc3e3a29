import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimerHeap } from './timer-heap.js';

const noop = (): void => {};

describe('TimerHeap', () => {
  it('pops only entries due at or before now, earliest first, FIFO among equal times', () => {
    const heap = new TimerHeap();
    const order: string[] = [];
    heap.push(30, () => order.push('c'));
    heap.push(10, () => order.push('a1'));
    heap.push(20, () => order.push('b'));
    heap.push(10, () => order.push('a2'));
    expect(heap.peekDueMs()).toBe(10);
    for (const e of heap.popDue(20)) e.fire();
    expect(order).toEqual(['a1', 'a2', 'b']);
    expect(heap.size).toBe(1);
    expect(heap.popDue(29)).toEqual([]);
    expect(heap.popDue(30).map((e) => e.dueMs)).toEqual([30]);
    expect(heap.peekDueMs()).toBeUndefined();
  });

  it('skips cancelled entries and counts only live ones', () => {
    const heap = new TimerHeap();
    const a = heap.push(1, noop);
    heap.push(2, noop);
    const c = heap.push(3, noop);
    heap.cancel(a);
    heap.cancel(a);
    heap.cancel(c);
    expect(heap.size).toBe(1);
    expect(heap.peekDueMs()).toBe(2);
    const [b] = heap.popDue(100);
    expect(b!.dueMs).toBe(2);
    expect(heap.size).toBe(0);
    // Cancelling an entry that already fired (a callback cancelling its own timer) changes nothing.
    heap.cancel(b!);
    expect(heap.size).toBe(0);
    heap.push(5, noop);
    expect(heap.size).toBe(1);
    expect(heap.popDue(5)).toHaveLength(1);
  });

  it('compacts when most entries are cancelled, keeping the order of the rest', () => {
    const heap = new TimerHeap();
    const entries = Array.from({ length: 5_000 }, (_, i) => heap.push(5_000 - i, noop));
    for (const e of entries) if (e.dueMs % 10 !== 0) heap.cancel(e);
    expect(heap.size).toBe(500);
    const popped = heap.popDue(Infinity).map((e) => e.dueMs);
    expect(popped).toEqual(Array.from({ length: 500 }, (_, i) => (i + 1) * 10));
  });

  it('behaves like a sorted list under random pushes, cancels and pops', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.record({ push: fc.integer({ min: 0, max: 1_000 }) }), fc.record({ cancel: fc.nat() }), fc.record({ pop: fc.integer({ min: 0, max: 1_000 }) }))),
        (ops) => {
          const heap = new TimerHeap();
          let model: { dueMs: number; seq: number; entry: ReturnType<TimerHeap['push']> }[] = [];
          let seq = 0;
          for (const op of ops) {
            if ('push' in op) {
              model.push({ dueMs: op.push, seq: seq++, entry: heap.push(op.push, noop) });
            } else if ('cancel' in op) {
              if (model.length === 0) continue;
              const victim = model[op.cancel % model.length]!;
              heap.cancel(victim.entry);
              model = model.filter((m) => m !== victim);
            } else {
              const expected = model.filter((m) => m.dueMs <= op.pop).sort((a, b) => a.dueMs - b.dueMs || a.seq - b.seq);
              model = model.filter((m) => m.dueMs > op.pop);
              expect(heap.popDue(op.pop)).toEqual(expected.map((m) => m.entry));
            }
            expect(heap.size).toBe(model.length);
          }
        },
      ),
    );
  });
});
