import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CgroupParseError } from './cgroup-parse-error.js';
import { CGROUP_V1_FILES, parseCgroupV1, type CgroupV1Files } from './cgroup-v1.js';

// Recorded from live containers on a cgroup v1 host; see fixtures/README.md.
const V1_ROOT = fileURLToPath(new URL('./fixtures/v1', import.meta.url));
const BUSY = '6d6cdb33c7e00af970fd098b93d2fa735639da06c24f593fa13f7ed790b76440';
const UNLIMITED = 'a9ea36d44b9724240791d57b5df5ebb7800fbeb86f7dfa455efa85325d4cc72e';
const OOM = 'c03842fd6f96b62ebe962372d719bfc7b666ab47e1db1a3a29f7562decf139c1';

function recorded(id: string): CgroupV1Files {
  const files: Record<string, string> = {};
  for (const f of CGROUP_V1_FILES) files[f.key] = readFileSync(join(V1_ROOT, f.controller, 'docker', id, f.file), 'latin1');
  return files as unknown as CgroupV1Files;
}

function statValue(text: string, key: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${key} `));
  if (line === undefined) throw new Error(`no ${key}`);
  return Number(line.split(' ')[1]);
}

describe('parseCgroupV1 on recorded files', () => {
  it('reads a throttled, memory-limited busy container', () => {
    const files = recorded(BUSY);
    const usage = parseCgroupV1(files);
    expect(usage.cpuUsageSeconds).toBeCloseTo(3.757817128, 9);
    expect(usage.memoryUsageBytes).toBe(42_819_584);
    // 32 MiB shmem stays in the working set; the 8 MiB of inactive file cache does not.
    expect(usage.memoryWorkingSetBytes).toBe(42_819_584 - statValue(files.memoryStat, 'total_inactive_file'));
    expect(statValue(files.memoryStat, 'total_inactive_file')).toBeGreaterThan(8_000_000);
    expect(usage.memoryLimitBytes).toBe(128 * 1024 * 1024);
    expect(usage.cpuCfsPeriods).toBe(75);
    expect(usage.cpuCfsThrottledPeriods).toBe(74);
    expect(usage.cpuCfsThrottledSeconds).toBeCloseTo(3.621707559, 9);
    expect(usage.pids).toBe(Number(files.pidsCurrent));
    expect(usage.oomKills).toBe(0);
  });

  it('reports no limit for an unlimited container (kernel sentinel) and no throttling', () => {
    const files = recorded(UNLIMITED);
    expect(files.memoryLimit.trim()).toBe('9223372036854771712');
    const usage = parseCgroupV1(files);
    expect(usage.memoryLimitBytes).toBeNull();
    expect(usage.cpuCfsPeriods).toBe(0);
    expect(usage.cpuCfsThrottledSeconds).toBe(0);
  });

  it('counts an OOM kill of a child process', () => {
    expect(parseCgroupV1(recorded(OOM)).oomKills).toBe(1);
  });

  it('gives null for counters whose files are unreadable or lack the field (kernel < 4.13)', () => {
    const files = recorded(BUSY);
    const usage = parseCgroupV1({ ...files, pidsCurrent: undefined, memoryOomControl: 'oom_kill_disable 0\nunder_oom 0\n' });
    expect(usage.pids).toBeNull();
    expect(usage.oomKills).toBeNull();
  });

  it('floors the working set at zero when inactive file exceeds the (batched) usage', () => {
    const files = recorded(BUSY);
    const usage = parseCgroupV1({ ...files, memoryUsage: '4096\n', memoryStat: 'total_inactive_file 8192\n' });
    expect(usage.memoryWorkingSetBytes).toBe(0);
  });

  it('rejects malformed files with a CGROUP_PARSE_FAILED error naming the file', () => {
    const files = recorded(BUSY);
    expect(() => parseCgroupV1({ ...files, cpuacctUsage: '' })).toThrow(CgroupParseError);
    expect(() => parseCgroupV1({ ...files, cpuStat: 'nr_periods 1\n' })).toThrow(/cpu\.stat.*nr_throttled/);
    try {
      parseCgroupV1({ ...files, memoryStat: 'cache\n' });
      expect.unreachable();
    } catch (error) {
      expect((error as CgroupParseError).code).toBe('CGROUP_PARSE_FAILED');
      expect((error as CgroupParseError).file).toBe('memory.stat');
    }
  });
});
