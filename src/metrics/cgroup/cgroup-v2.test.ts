import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CGROUP_V2_FILES, parseCgroupV2, type CgroupV2Files } from './cgroup-v2.js';

// Written by hand from the formats in the kernel's Documentation/admin-guide/cgroup-v2.rst,
// because this machine has no cgroup v2 controllers; see fixtures/README.md.
const V2_ROOT = fileURLToPath(new URL('./fixtures/v2', import.meta.url));
const SYSTEMD_DIR = join(V2_ROOT, 'system.slice', 'docker-1f3a5c7e9b2d4f6a8c0e1a3b5d7f9e2c4a6b8d0f1e3c5a7b9d2f4e6a8c0b1d3e.scope');
const CGROUPFS_DIR = join(V2_ROOT, 'docker', '7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d');

function files(dir: string): CgroupV2Files {
  const out: Record<string, string> = {};
  for (const f of CGROUP_V2_FILES) out[f.key] = readFileSync(join(dir, f.file), 'latin1');
  return out as unknown as CgroupV2Files;
}

describe('parseCgroupV2', () => {
  it('reads a limited, throttled container that had an OOM kill', () => {
    const usage = parseCgroupV2(files(SYSTEMD_DIR));
    expect(usage).toEqual({
      cpuUsageSeconds: 8.123456,
      memoryUsageBytes: 75_497_472,
      memoryWorkingSetBytes: 75_497_472 - 12_582_912,
      memoryLimitBytes: 64 * 1024 * 1024,
      cpuCfsPeriods: 163,
      cpuCfsThrottledPeriods: 158,
      cpuCfsThrottledSeconds: 7.612345,
      pids: 3,
      oomKills: 1,
    });
  });

  it('treats memory.max "max" as no limit and missing CFS keys (no quota) as zero', () => {
    const usage = parseCgroupV2(files(CGROUPFS_DIR));
    expect(usage.memoryLimitBytes).toBeNull();
    expect(usage.cpuUsageSeconds).toBeCloseTo(0.0015, 9);
    expect([usage.cpuCfsPeriods, usage.cpuCfsThrottledPeriods, usage.cpuCfsThrottledSeconds]).toEqual([0, 0, 0]);
    expect(usage.oomKills).toBe(0);
    // This fixture has more inactive_file than memory.current: the floor keeps it at 0.
    expect(usage.memoryWorkingSetBytes).toBe(0);
  });

  it('gives null for pids and OOM kills when their files are unreadable', () => {
    const usage = parseCgroupV2({ ...files(SYSTEMD_DIR), pidsCurrent: undefined, memoryEvents: undefined });
    expect(usage.pids).toBeNull();
    expect(usage.oomKills).toBeNull();
  });

  it('requires usage_usec in cpu.stat', () => {
    expect(() => parseCgroupV2({ ...files(SYSTEMD_DIR), cpuStat: 'user_usec 1\n' })).toThrow(/usage_usec/);
  });
});
