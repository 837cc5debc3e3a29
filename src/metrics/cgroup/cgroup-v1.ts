import type { ContainerUsageFields } from './container-usage.js';
import { parseFlatKeyed, parseSingleValue, requireKey } from './cgroup-file-format.js';

/** A v1 controller hierarchy the collector reads from. */
export type CgroupV1Controller = 'cpu' | 'cpuacct' | 'memory' | 'pids';

/** Contents of the cgroup v1 files of one container, as read from disk. */
export interface CgroupV1Files {
  /** cpuacct.usage: total CPU time in nanoseconds. */
  cpuacctUsage: string;
  /** cpu.stat: nr_periods, nr_throttled, throttled_time (ns). */
  cpuStat: string;
  /** memory.usage_in_bytes. */
  memoryUsage: string;
  /** memory.stat: we need total_inactive_file (hierarchical) for the working set. */
  memoryStat: string;
  /** memory.limit_in_bytes. */
  memoryLimit: string;
  /** memory.oom_control; its `oom_kill` line exists on kernels >= 4.13. Undefined when unreadable. */
  memoryOomControl?: string | undefined;
  /** pids.current; undefined when the pids controller is not mounted. */
  pidsCurrent?: string | undefined;
}

/** Which file of which controller fills each field; `optional` files may be missing. */
export const CGROUP_V1_FILES: ReadonlyArray<{
  key: keyof CgroupV1Files;
  controller: CgroupV1Controller;
  file: string;
  optional: boolean;
}> = [
  { key: 'cpuacctUsage', controller: 'cpuacct', file: 'cpuacct.usage', optional: false },
  { key: 'cpuStat', controller: 'cpu', file: 'cpu.stat', optional: false },
  { key: 'memoryUsage', controller: 'memory', file: 'memory.usage_in_bytes', optional: false },
  { key: 'memoryStat', controller: 'memory', file: 'memory.stat', optional: false },
  { key: 'memoryLimit', controller: 'memory', file: 'memory.limit_in_bytes', optional: false },
  { key: 'memoryOomControl', controller: 'memory', file: 'memory.oom_control', optional: true },
  { key: 'pidsCurrent', controller: 'pids', file: 'pids.current', optional: true },
];

/**
 * v1 has no "max": an unlimited memory.limit_in_bytes reads as PAGE_COUNTER_MAX pages
 * (9223372036854771712 with 4 KiB pages, a bit less with 64 KiB pages). Nobody sets a real
 * limit of 4 EiB, so anything from 2^62 up means "no limit".
 */
const V1_UNLIMITED_BYTES = 2 ** 62;

const NS_PER_SECOND = 1e9;

/** Turns the contents of one container's cgroup v1 files into usage figures. Pure. */
export function parseCgroupV1(files: CgroupV1Files): ContainerUsageFields {
  const cpuStat = parseFlatKeyed(files.cpuStat, 'cpu.stat');
  const memoryStat = parseFlatKeyed(files.memoryStat, 'memory.stat');
  const memoryUsageBytes = parseSingleValue(files.memoryUsage, 'memory.usage_in_bytes');
  const limit = parseSingleValue(files.memoryLimit, 'memory.limit_in_bytes');
  // cAdvisor uses the hierarchical total_inactive_file; the local inactive_file is the
  // same number for a leaf cgroup and is all we have with use_hierarchy=0.
  const inactiveFile = memoryStat.get('total_inactive_file') ?? memoryStat.get('inactive_file') ?? 0;
  const oomKill =
    files.memoryOomControl === undefined ? undefined : parseFlatKeyed(files.memoryOomControl, 'memory.oom_control').get('oom_kill');
  return {
    cpuUsageSeconds: parseSingleValue(files.cpuacctUsage, 'cpuacct.usage') / NS_PER_SECOND,
    memoryUsageBytes,
    memoryWorkingSetBytes: Math.max(0, memoryUsageBytes - inactiveFile),
    memoryLimitBytes: limit >= V1_UNLIMITED_BYTES ? null : limit,
    cpuCfsPeriods: requireKey(cpuStat, 'nr_periods', 'cpu.stat'),
    cpuCfsThrottledPeriods: requireKey(cpuStat, 'nr_throttled', 'cpu.stat'),
    cpuCfsThrottledSeconds: requireKey(cpuStat, 'throttled_time', 'cpu.stat') / NS_PER_SECOND,
    pids: files.pidsCurrent === undefined ? null : parseSingleValue(files.pidsCurrent, 'pids.current'),
    oomKills: oomKill ?? null,
  };
}
