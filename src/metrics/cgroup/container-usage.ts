/**
 * Where a sample came from: the container's cgroup files, Docker's stats API, or the
 * Kubernetes resource metrics API (metrics.k8s.io, whose CPU counter is integrated from rates).
 */
export type UsageSource = 'cgroup' | 'docker-api' | 'metrics-api';

/**
 * The resource figures of one container that both the cgroup v1 and v2 parsers produce.
 * Counters are cumulative since the container's cgroup was created; rates are the
 * consumer's job (delta of a counter over delta of `timestampMs` of two samples).
 */
export interface ContainerUsageFields {
  /** CPU time used by all processes of the container, in seconds (counter). */
  cpuUsageSeconds: number;
  /** Memory charged to the cgroup, page cache included (v1 memory.usage_in_bytes, v2 memory.current). */
  memoryUsageBytes: number;
  /**
   * cAdvisor's working set: usage minus inactive file cache (v1 total_inactive_file,
   * v2 inactive_file), floored at 0. This is what the OOM killer and kubelet eviction look at.
   */
  memoryWorkingSetBytes: number;
  /** Memory limit in bytes, or null when the container has none. */
  memoryLimitBytes: number | null;
  /** CFS enforcement periods that elapsed while the container had a CPU quota (counter). */
  cpuCfsPeriods: number;
  /** Periods in which the container used up its quota and was throttled (counter). */
  cpuCfsThrottledPeriods: number;
  /** Total time the container's tasks sat throttled, in seconds (counter). */
  cpuCfsThrottledSeconds: number;
  /** Current number of tasks (processes and threads), or null when the pids controller is not readable. */
  pids: number | null;
  /**
   * OOM kills inside the container (counter), or null when the kernel does not expose it
   * (v1 memory.oom_control has the `oom_kill` field only on kernels >= 4.13; Docker's stats
   * API does not expose it at all).
   */
  oomKills: number | null;
}

/** One point-in-time resource sample of one container. */
export interface ContainerUsage extends ContainerUsageFields {
  /** The full 64-hex Docker container id the sample belongs to (as asked for). */
  containerId: string;
  source: UsageSource;
  /** When the sample was taken, in milliseconds since the Unix epoch. */
  timestampMs: number;
}

/**
 * Produces a sample for a container whose cgroup directory could not be found (other
 * cgroup driver, remote Docker host, short id). Resolves to null when the container does
 * not exist; rejects on other failures.
 */
export type UsageFallback = (containerId: string, signal?: AbortSignal) => Promise<ContainerUsage | null>;
