import { performance } from 'node:perf_hooks';

/** One traced call: when it began and ended (performance.now() ms) for one key. */
export interface TracedCall {
  /** e.g. "store.updateAgent#2": the second updateAgent for this key. */
  label: string;
  startMs: number;
  endMs: number | undefined;
}

/**
 * Records the calls made through wrapped objects, grouped by a key (an agent id)
 * that `keyOf` extracts from each call's arguments. Only keys that were `open`ed (by
 * hand, or by a call `opensKey` names) are recorded, and only until they are `close`d, so a benchmark traces exactly the
 * window it measures. Costs a Map lookup and two performance.now() per call.
 */
export class CallTracer {
  private readonly calls = new Map<string, TracedCall[]>();
  private readonly counters = new Map<string, Map<string, number>>();
  private readonly closed = new Set<string>();

  open(key: string): void {
    this.calls.set(key, []);
    this.counters.set(key, new Map());
    this.closed.delete(key);
  }

  close(key: string): void {
    this.closed.add(key);
  }

  /** Records a point in time (no duration) for an open key. */
  mark(key: string, label: string, atMs = performance.now()): void {
    this.calls.get(key)?.push({ label, startMs: atMs, endMs: atMs });
  }

  callsOf(key: string): readonly TracedCall[] {
    return this.calls.get(key) ?? [];
  }

  forget(key: string): void {
    this.calls.delete(key);
    this.counters.delete(key);
    this.closed.delete(key);
  }

  /**
   * A proxy of `target` whose async methods are traced as `${prefix}.${method}#n`.
   * Methods are called on the target itself, so classes with #private fields work.
   */
  wrap<T extends object>(
    target: T,
    prefix: string,
    keyOf: (method: string, args: unknown[]) => string | undefined,
    opensKey: (method: string) => boolean = () => false,
    /** Tags a call by who made it (say, from the stack); the tag prefixes the label. */
    callerOf: () => string | undefined = () => undefined,
  ): T {
    return new Proxy(target, {
      get: (obj, prop, receiver) => {
        const value = Reflect.get(obj, prop, receiver) as unknown;
        if (typeof value !== 'function' || typeof prop !== 'string') return value;
        const fn = value as (...args: unknown[]) => unknown;
        return (...args: unknown[]): unknown => {
          const key = keyOf(prop, args);
          // The call that creates the key (say, createAgent) starts its trace.
          if (key !== undefined && opensKey(prop)) this.open(key);
          const list = key !== undefined && !this.closed.has(key) ? this.calls.get(key) : undefined;
          if (!list) return fn.apply(obj, args);
          const caller = callerOf();
          const name = `${caller !== undefined ? `${caller}: ` : ''}${prefix}.${prop}`;
          const counts = this.counters.get(key!)!;
          const n = (counts.get(name) ?? 0) + 1;
          counts.set(name, n);
          const call: TracedCall = { label: `${name}#${n}`, startMs: performance.now(), endMs: undefined };
          list.push(call);
          const result = fn.apply(obj, args);
          if (result instanceof Promise) {
            return result.finally(() => {
              call.endMs = performance.now();
            });
          }
          call.endMs = performance.now();
          return result;
        };
      },
    });
  }
}
