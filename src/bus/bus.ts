import type { PlatformEvent } from '../domain/event.js';

/**
 * Work queue of reconcile keys and fan-out of platform events. Adapters: memory
 * (default, one process) and redis (several replicas).
 */
export interface Bus {
  readonly kind: string;
  /**
   * Queues a key for reconciliation, deduplicated: a key already waiting is not
   * queued twice; with delayMs it becomes due later (the earliest due time wins).
   */
  enqueue(key: string, delayMs?: number): void;
  /**
   * Runs handler for due keys, at most `concurrency` at a time, never the same key
   * twice at once, until the signal aborts. A key enqueued while its handler runs is
   * processed again afterwards.
   */
  consume(handler: (key: string, signal: AbortSignal) => Promise<void>, concurrency: number, signal: AbortSignal): void;
  /** Keys waiting (due or delayed). */
  depth(): number;
  /**
   * Keys whose due time has come, waiting for a handler: how far the consumers are behind.
   * Read now (not cached), after this instance's enqueues so far have landed.
   */
  backlog(): Promise<number>;

  publish(event: PlatformEvent): void;
  /** Returns an unsubscribe function. */
  subscribe(listener: (event: PlatformEvent) => void): () => void;

  close(): Promise<void>;
}
