import { systemClock, type Clock } from '../../domain/clock.js';
import { detectCgroupLayout, type CgroupLayout } from './cgroup-layout.js';
import { CgroupReader, DEFAULT_CONTAINER_CGROUP_PATHS } from './cgroup-reader.js';
import type { ContainerUsage, ContainerUsageFields, UsageFallback } from './container-usage.js';
import { forEachBounded } from './for-each-bounded.js';

/** Options of {@link CgroupCollector}; every member is optional. */
export interface CgroupCollectorOptions {
  /**
   * Where the cgroup filesystem is mounted; tests point it at a fixture tree.
   * @default '/sys/fs/cgroup'
   */
  cgroupRoot?: string;
  /**
   * Container cgroup paths relative to the root (v2) or each controller mount (v1), `{id}`
   * standing for the full container id.
   * @default ['docker/{id}', 'system.slice/docker-{id}.scope'] (cgroupfs, then systemd driver)
   */
  containerCgroupPaths?: readonly string[];
  /**
   * Asked for containers whose cgroup directory is not found (or whose files fail to parse),
   * e.g. the Docker stats API (see createDockerStatsFallback). Without it such containers are
   * left out of the result.
   */
  fallback?: UsageFallback;
  /**
   * `sync` reads files with blocking syscalls on the main thread; `async` uses fs.promises.
   * Measured with bench/metrics-scrape.ts (200 containers, cgroup v1, 2 busy cores): sync
   * about 17 ms per full scrape, async 170-190 ms, because each async readFile is several
   * thread-pool round trips and the pool has four threads. The cost of sync is that the event
   * loop is blocked while a slice of containers is read; `syncSliceSize` bounds that.
   * @default 'sync'
   */
  readMode?: 'sync' | 'async';
  /**
   * Sync mode: containers read per event-loop turn before yielding (setImmediate), so a
   * scrape of thousands of containers does not stall request handling for its whole length.
   * @default 50
   */
  syncSliceSize?: number;
  /** Async mode: containers read at once. @default 16 */
  readConcurrency?: number;
  /**
   * Fallback calls in flight at once. Docker answers a stats request only at its collector's
   * next 1 s tick, so calls mostly wait and running many at once is cheap for the daemon.
   * @default 16
   */
  fallbackConcurrency?: number;
  /** @default systemClock */
  clock?: Clock;
  /**
   * Told about containers whose cgroup read failed unexpectedly or whose fallback failed.
   * @default emits a process warning
   */
  onError?: (containerId: string, error: unknown) => void;
}

/**
 * Samples CPU, memory, CFS throttling, pids and OOM kills of Docker containers straight from
 * their cgroup files: a few microseconds per container, where Docker's stats API takes tens of
 * up to one second (one-shot) or two (default) per container, because it answers at its
 * collector's next 1 s tick. Containers it cannot find there
 * go to the fallback, and each sample says which source produced it.
 */
export class CgroupCollector {
  private readonly cgroupRoot: string;
  private readonly containerCgroupPaths: readonly string[];
  private readonly fallback: UsageFallback | undefined;
  private readonly readMode: 'sync' | 'async';
  private readonly syncSliceSize: number;
  private readonly readConcurrency: number;
  private readonly fallbackConcurrency: number;
  private readonly clock: Clock;
  private readonly onError: (containerId: string, error: unknown) => void;
  private reader: CgroupReader | undefined;
  private detectedLayout: CgroupLayout | undefined;

  constructor(options: CgroupCollectorOptions = {}) {
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup';
    this.containerCgroupPaths = options.containerCgroupPaths ?? DEFAULT_CONTAINER_CGROUP_PATHS;
    this.fallback = options.fallback;
    this.readMode = options.readMode ?? 'sync';
    this.syncSliceSize = Math.max(1, options.syncSliceSize ?? 50);
    this.readConcurrency = Math.max(1, options.readConcurrency ?? 16);
    this.fallbackConcurrency = Math.max(1, options.fallbackConcurrency ?? 16);
    this.clock = options.clock ?? systemClock;
    this.onError =
      options.onError ??
      ((containerId, error) => process.emitWarning(`container ${containerId}: ${String(error)}`, { code: 'CGROUP_COLLECT_FAILED' }));
  }

  /** The cgroup layout found under cgroupRoot (detected on first use, then cached). */
  get layout(): CgroupLayout {
    this.detectedLayout ??= detectCgroupLayout(this.cgroupRoot);
    return this.detectedLayout;
  }

  /**
   * Samples the given containers (full 64-hex ids for the cgroup path; other ids go straight
   * to the fallback). The result holds one sample per container that could be sampled;
   * containers that exist nowhere are left out. Rejects only when `signal` aborts.
   */
  async collect(containerIds: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>> {
    signal?.throwIfAborted();
    const reader = this.getReader();
    const ids = [...new Set(containerIds)];
    // Paths of containers no longer asked for are dropped so the cache tracks the live set.
    reader.retainOnly(new Set(ids));
    const result = new Map<string, ContainerUsage>();
    const missing: string[] = [];
    const accept = (id: string, fields: ContainerUsageFields | null, timestampMs: number): void => {
      if (fields === null) missing.push(id);
      else result.set(id, { containerId: id, source: 'cgroup', ...fields, timestampMs });
    };
    const readFailed = (id: string, error: unknown): void => {
      this.onError(id, error);
      missing.push(id);
    };

    if (this.readMode === 'sync') {
      for (let start = 0; start < ids.length; start += this.syncSliceSize) {
        if (start > 0) await yieldToEventLoop();
        signal?.throwIfAborted();
        for (const id of ids.slice(start, start + this.syncSliceSize)) {
          try {
            accept(id, reader.readSync(id), this.clock.now());
          } catch (error) {
            readFailed(id, error);
          }
        }
      }
    } else {
      await forEachBounded(
        ids,
        this.readConcurrency,
        async (id) => {
          try {
            const fields = await reader.readAsync(id);
            accept(id, fields, this.clock.now());
          } catch (error) {
            readFailed(id, error);
          }
        },
        signal,
      );
    }

    const fallback = this.fallback;
    if (fallback !== undefined && missing.length > 0) {
      await forEachBounded(
        missing,
        this.fallbackConcurrency,
        async (id) => {
          try {
            const usage = await fallback(id, signal);
            if (usage !== null) result.set(id, usage);
          } catch (error) {
            if (signal?.aborted) throw error;
            this.onError(id, error);
          }
        },
        signal,
      );
    }
    return result;
  }

  private getReader(): CgroupReader {
    this.reader ??= new CgroupReader(this.layout, this.containerCgroupPaths);
    return this.reader;
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
