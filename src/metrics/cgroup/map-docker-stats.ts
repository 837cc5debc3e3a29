import type { ContainerUsage } from './container-usage.js';

/**
 * The parts of Docker's `GET /containers/{id}/stats` response we read. Every field is
 * optional because Docker omits or zeroes them for containers that are not running and
 * fills different memory keys on cgroup v1 and v2 hosts.
 */
export interface DockerStatsResponse {
  read?: string;
  pids_stats?: { current?: number };
  cpu_stats?: {
    cpu_usage?: { total_usage?: number };
    throttling_data?: { periods?: number; throttled_periods?: number; throttled_time?: number };
  };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number | undefined> };
}

/**
 * Docker sends `read: 0001-01-01T00:00:00Z` and zeroes when the container is not running;
 * that is no measurement, so it maps to no sample rather than a sample of zeros.
 */
const NOT_RUNNING_BEFORE_MS = Date.UTC(1971, 0, 1);

/**
 * Maps a Docker stats response to a ContainerUsage with the same meaning as the cgroup
 * readers, or null when Docker measured nothing (container not running). Pure.
 *
 * @param hostMemoryBytes the Docker host's total memory: Docker reports it as the limit of
 *   containers that have none, so a limit at or above it means "no limit".
 */
export function mapDockerStats(containerId: string, stats: DockerStatsResponse, hostMemoryBytes: number): ContainerUsage | null {
  const timestampMs = stats.read === undefined ? NaN : Date.parse(stats.read);
  if (!(timestampMs >= NOT_RUNNING_BEFORE_MS)) return null;
  const memory = stats.memory_stats ?? {};
  const throttling = stats.cpu_stats?.throttling_data ?? {};
  const usageBytes = memory.usage ?? 0;
  // v1 hosts report the hierarchical total_inactive_file; v2 hosts only inactive_file.
  const inactiveFile = memory.stats?.['total_inactive_file'] ?? memory.stats?.['inactive_file'] ?? 0;
  const limit = memory.limit ?? 0;
  return {
    containerId,
    source: 'docker-api',
    // Docker converts v2's usage_usec to nanoseconds, so total_usage is ns on both.
    cpuUsageSeconds: (stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9,
    memoryUsageBytes: usageBytes,
    memoryWorkingSetBytes: Math.max(0, usageBytes - inactiveFile),
    memoryLimitBytes: limit <= 0 || limit >= hostMemoryBytes ? null : limit,
    cpuCfsPeriods: throttling.periods ?? 0,
    cpuCfsThrottledPeriods: throttling.throttled_periods ?? 0,
    cpuCfsThrottledSeconds: (throttling.throttled_time ?? 0) / 1e9,
    pids: stats.pids_stats?.current ?? null,
    // The stats API has no OOM-kill counter (only inspect's State.OOMKilled for PID 1).
    oomKills: null,
    timestampMs,
  };
}
