import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../domain/clock.js';
import { CgroupCollector } from './cgroup-collector.js';
import type { ContainerUsage, UsageFallback } from './container-usage.js';

const fixtures = fileURLToPath(new URL('./fixtures', import.meta.url));
const V1_BUSY = '6d6cdb33c7e00af970fd098b93d2fa735639da06c24f593fa13f7ed790b76440';
const V1_UNLIMITED = 'a9ea36d44b9724240791d57b5df5ebb7800fbeb86f7dfa455efa85325d4cc72e';
const V1_OOM = 'c03842fd6f96b62ebe962372d719bfc7b666ab47e1db1a3a29f7562decf139c1';
const V2_SYSTEMD = '1f3a5c7e9b2d4f6a8c0e1a3b5d7f9e2c4a6b8d0f1e3c5a7b9d2f4e6a8c0b1d3e';
const V2_CGROUPFS = '7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d';
const UNKNOWN = 'f'.repeat(64);

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});
/** A writable copy of a fixture root, for tests that remove or corrupt files. */
function copyOf(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cgroup-collector-'));
  temps.push(dir);
  cpSync(join(fixtures, name), dir, { recursive: true });
  return dir;
}

/** A fallback that records its calls and answers for the ids it knows. */
function recordingFallback(known: Record<string, number>): { fallback: UsageFallback; calls: string[] } {
  const calls: string[] = [];
  const fallback: UsageFallback = async (id) => {
    calls.push(id);
    const cpu = known[id];
    if (cpu === undefined) return null;
    return {
      containerId: id, source: 'docker-api', cpuUsageSeconds: cpu, memoryUsageBytes: 1, memoryWorkingSetBytes: 1,
      memoryLimitBytes: null, cpuCfsPeriods: 0, cpuCfsThrottledPeriods: 0, cpuCfsThrottledSeconds: 0, pids: 1, oomKills: null, timestampMs: 0,
    } satisfies ContainerUsage;
  };
  return { fallback, calls };
}

describe.each(['sync', 'async'] as const)('CgroupCollector (%s reads)', (readMode) => {
  it('samples every v1 container from its files, stamped by the clock', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const collector = new CgroupCollector({ cgroupRoot: join(fixtures, 'v1'), readMode, clock });
    const result = await collector.collect([V1_BUSY, V1_UNLIMITED, V1_OOM]);
    expect([...result.keys()].sort()).toEqual([V1_BUSY, V1_UNLIMITED, V1_OOM].sort());
    const busy = result.get(V1_BUSY);
    expect(busy).toMatchObject({ containerId: V1_BUSY, source: 'cgroup', cpuCfsPeriods: 75, memoryLimitBytes: 134_217_728, timestampMs: 1_700_000_000_000 });
    expect(result.get(V1_OOM)?.oomKills).toBe(1);
    expect(result.get(V1_UNLIMITED)?.memoryLimitBytes).toBeNull();
  });

  it('finds v2 containers under both the systemd and the cgroupfs driver paths', async () => {
    const collector = new CgroupCollector({ cgroupRoot: join(fixtures, 'v2'), readMode });
    const result = await collector.collect([V2_SYSTEMD, V2_CGROUPFS]);
    expect(result.get(V2_SYSTEMD)).toMatchObject({ source: 'cgroup', cpuUsageSeconds: 8.123456, oomKills: 1 });
    expect(result.get(V2_CGROUPFS)).toMatchObject({ source: 'cgroup', memoryLimitBytes: null });
    expect(collector.layout.version).toBe(2);
  });

  it('sends unknown and short ids to the fallback and drops those it does not know either', async () => {
    const { fallback, calls } = recordingFallback({ [UNKNOWN]: 42, abc123: 7 });
    const collector = new CgroupCollector({ cgroupRoot: join(fixtures, 'v1'), readMode, fallback });
    const result = await collector.collect([V1_BUSY, UNKNOWN, 'abc123', 'e'.repeat(64)]);
    expect(calls.sort()).toEqual([UNKNOWN, 'abc123', 'e'.repeat(64)].sort());
    expect(result.get(V1_BUSY)?.source).toBe('cgroup');
    expect(result.get(UNKNOWN)).toMatchObject({ source: 'docker-api', cpuUsageSeconds: 42 });
    expect(result.get('abc123')?.cpuUsageSeconds).toBe(7);
    expect(result.has('e'.repeat(64))).toBe(false);
  });

  it('falls back when a container vanishes after its path was cached, and forgets the path', async () => {
    const root = copyOf('v1');
    const { fallback, calls } = recordingFallback({});
    const collector = new CgroupCollector({ cgroupRoot: root, readMode, fallback });
    expect((await collector.collect([V1_BUSY, V1_OOM])).size).toBe(2);
    for (const controller of ['cpu', 'cpuacct', 'memory', 'pids']) rmSync(join(root, controller, 'docker', V1_BUSY), { recursive: true });
    const second = await collector.collect([V1_BUSY, V1_OOM]);
    expect([...second.keys()]).toEqual([V1_OOM]);
    expect(calls).toEqual([V1_BUSY]);
  });

  it('reports a malformed file and still asks the fallback', async () => {
    const root = copyOf('v1');
    writeFileSync(join(root, 'memory', 'docker', V1_BUSY, 'memory.usage_in_bytes'), 'garbage\n');
    const errors: Array<[string, unknown]> = [];
    const { fallback } = recordingFallback({ [V1_BUSY]: 3 });
    const collector = new CgroupCollector({ cgroupRoot: root, readMode, fallback, onError: (id, e) => errors.push([id, e]) });
    const result = await collector.collect([V1_BUSY, V1_OOM]);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.[0]).toBe(V1_BUSY);
    expect(errors[0]?.[1]).toMatchObject({ code: 'CGROUP_PARSE_FAILED', file: 'memory.usage_in_bytes' });
    expect(result.get(V1_BUSY)?.source).toBe('docker-api');
    expect(result.get(V1_OOM)?.source).toBe('cgroup');
  });

  it('rejects when the signal is already aborted', async () => {
    const collector = new CgroupCollector({ cgroupRoot: join(fixtures, 'v1'), readMode });
    await expect(collector.collect([V1_BUSY], AbortSignal.abort(new Error('stop')))).rejects.toThrow('stop');
  });
});

describe('CgroupCollector', () => {
  it('reads pids as null when the pids controller is not mounted', async () => {
    const root = copyOf('v1');
    rmSync(join(root, 'pids'), { recursive: true });
    const result = await new CgroupCollector({ cgroupRoot: root }).collect([V1_BUSY]);
    expect(result.get(V1_BUSY)).toMatchObject({ source: 'cgroup', pids: null, cpuCfsPeriods: 75 });
  });

  it('uses only the fallback when there is no cgroup filesystem', async () => {
    const { fallback, calls } = recordingFallback({ [V1_BUSY]: 1 });
    const collector = new CgroupCollector({ cgroupRoot: '/does/not/exist', fallback });
    const result = await collector.collect([V1_BUSY]);
    expect(collector.layout).toEqual({ version: 'none' });
    expect(calls).toEqual([V1_BUSY]);
    expect(result.get(V1_BUSY)?.source).toBe('docker-api');
  });

  it('honours custom container cgroup paths (daemon --cgroup-parent)', async () => {
    const root = copyOf('v2');
    cpSync(join(root, 'docker', V2_CGROUPFS), join(root, 'agents', `ctr-${V2_CGROUPFS}`), { recursive: true });
    rmSync(join(root, 'docker'), { recursive: true });
    const collector = new CgroupCollector({ cgroupRoot: root, containerCgroupPaths: ['agents/ctr-{id}'] });
    expect((await collector.collect([V2_CGROUPFS])).get(V2_CGROUPFS)?.source).toBe('cgroup');
  });

  it.each([
    [1, true],
    [50, false],
  ])('with slices of %i containers, lets other callbacks run mid-scrape: %s', async (syncSliceSize, expected) => {
    const collector = new CgroupCollector({ cgroupRoot: join(fixtures, 'v1'), syncSliceSize });
    let otherWorkRan = false;
    setImmediate(() => {
      otherWorkRan = true;
    });
    expect((await collector.collect([V1_BUSY, V1_OOM, V1_UNLIMITED])).size).toBe(3);
    expect(otherWorkRan).toBe(expected);
  });
});
