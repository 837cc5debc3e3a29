import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { linkSignals } from './linked-signal.js';

/** Node's internal bookkeeping of AbortSignal.any on a source signal (undefined: never used). */
function dependants(signal: AbortSignal): number {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  const set = key === undefined ? undefined : (signal as unknown as Record<symbol, Set<unknown> | undefined>)[key];
  return set?.size ?? 0;
}

describe('linkSignals', () => {
  it('aborts with the reason of whichever source aborts first', () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkSignals(a.signal, undefined, b.signal);
    expect(linked.signal.aborted).toBe(false);
    b.abort(new Error('b went first'));
    expect(linked.signal.aborted).toBe(true);
    expect((linked.signal.reason as Error).message).toBe('b went first');
    a.abort(new Error('too late'));
    expect((linked.signal.reason as Error).message).toBe('b went first');
  });

  it('is aborted at once when a source already is, and passes a single source through', () => {
    const done = AbortSignal.abort('gone');
    expect(linkSignals(new AbortController().signal, done).signal.reason).toBe('gone');
    const only = new AbortController().signal;
    expect(linkSignals(undefined, only).signal).toBe(only);
    expect(linkSignals().signal.aborted).toBe(false);
  });

  it('leaves nothing behind in a long-lived source once disposed (unlike AbortSignal.any here)', () => {
    const longLived = new AbortController();
    for (let i = 0; i < 1_000; i++) {
      const perCall = linkSignals(longLived.signal, AbortSignal.timeout(60_000));
      perCall.dispose();
    }
    expect(dependants(longLived.signal)).toBe(0);
    expect(getEventListeners(longLived.signal, 'abort')).toHaveLength(0);
    // A disposed link no longer follows its sources.
    const linked = linkSignals(longLived.signal, new AbortController().signal);
    linked.dispose();
    longLived.abort();
    expect(linked.signal.aborted).toBe(false);

    // What the helper avoids: this Node keeps one entry per AbortSignal.any call in the source.
    const source = new AbortController();
    for (let i = 0; i < 100; i++) AbortSignal.any([source.signal, new AbortController().signal]);
    expect(dependants(source.signal)).toBeGreaterThan(0);
  });
});
