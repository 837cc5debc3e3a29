import type { ContainerUsageFields } from './container-usage.js';
import { parseFlatKeyed, parseSingleValue, requireKey } from './cgroup-file-format.js';

/** Contents of the cgroup v2 (unified) files of one container, as read from disk. */
export interface CgroupV2Files {
  /** cpu.stat: usage_usec always; nr_periods, nr_throttled, throttled_usec only with the cpu controller enabled. */
  cpuStat: string;
  /** memory.current. */
  memoryCurrent: string;
  /** memory.stat: we need inactive_file for the working set. */
  memoryStat: string;
  /** memory.max: a number or `max`. */
  memoryMax: string;
  /** memory.events: oom_kill (hierarchical, i.e. counts the container's sub-cgroups too). */
  memoryEvents?: string | undefined;
  /** pids.current; undefined when the pids controller is not enabled for the cgroup. */
  pidsCurrent?: string | undefined;
}

/** Which file fills each field; all live in the container's one unified directory. */
export const CGROUP_V2_FILES: ReadonlyArray<{ key: keyof CgroupV2Files; file: string; optional: boolean }> = [
  { key: 'cpuStat', file: 'cpu.stat', optional: false },
  { key: 'memoryCurrent', file: 'memory.current', optional: false },
  { key: 'memoryStat', file: 'memory.stat', optional: false },
  { key: 'memoryMax', file: 'memory.max', optional: false },
  { key: 'memoryEvents', file: 'memory.events', optional: true },
  { key: 'pidsCurrent', file: 'pids.current', optional: true },
];

const USEC_PER_SECOND = 1e6;

/** Turns the contents of one container's cgroup v2 files into usage figures. Pure. */
export function parseCgroupV2(files: CgroupV2Files): ContainerUsageFields {
  const cpuStat = parseFlatKeyed(files.cpuStat, 'cpu.stat');
  const memoryStat = parseFlatKeyed(files.memoryStat, 'memory.stat');
  const memoryUsageBytes = parseSingleValue(files.memoryCurrent, 'memory.current');
  const limit = parseSingleValue(files.memoryMax, 'memory.max');
  const oomKill = files.memoryEvents === undefined ? undefined : parseFlatKeyed(files.memoryEvents, 'memory.events').get('oom_kill');
  return {
    cpuUsageSeconds: requireKey(cpuStat, 'usage_usec', 'cpu.stat') / USEC_PER_SECOND,
    memoryUsageBytes,
    memoryWorkingSetBytes: Math.max(0, memoryUsageBytes - (memoryStat.get('inactive_file') ?? 0)),
    memoryLimitBytes: limit === Infinity ? null : limit,
    // Without a CPU quota (or without the cpu controller) the kernel omits the CFS keys;
    // zero is the truthful count of throttled periods then.
    cpuCfsPeriods: cpuStat.get('nr_periods') ?? 0,
    cpuCfsThrottledPeriods: cpuStat.get('nr_throttled') ?? 0,
    cpuCfsThrottledSeconds: (cpuStat.get('throttled_usec') ?? 0) / USEC_PER_SECOND,
    pids: files.pidsCurrent === undefined ? null : parseSingleValue(files.pidsCurrent, 'pids.current'),
    oomKills: oomKill ?? null,
  };
}
