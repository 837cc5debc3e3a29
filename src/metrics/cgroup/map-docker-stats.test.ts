import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CgroupCollector } from './cgroup-collector.js';
import { mapDockerStats, type DockerStatsResponse } from './map-docker-stats.js';

const fixtures = fileURLToPath(new URL('./fixtures', import.meta.url));
const load = (name: string): DockerStatsResponse => JSON.parse(readFileSync(`${fixtures}/${name}`, 'utf8')) as DockerStatsResponse;
// MemTotal of the machine the fixtures were recorded on (Docker's "limit" of unlimited containers).
const HOST_MEMORY_BYTES = 25_276_510_208;
const BUSY = '6d6cdb33c7e00af970fd098b93d2fa735639da06c24f593fa13f7ed790b76440';

describe('mapDockerStats', () => {
  it('agrees with the cgroup files recorded from the same container moments earlier', async () => {
    const docker = mapDockerStats(BUSY, load('docker-stats-v1-oneshot.json'), HOST_MEMORY_BYTES);
    const cgroup = (await new CgroupCollector({ cgroupRoot: `${fixtures}/v1` }).collect([BUSY])).get(BUSY);
    expect(docker?.source).toBe('docker-api');
    expect(cgroup?.source).toBe('cgroup');
    if (docker === null || docker === undefined || cgroup === undefined) throw new Error('no samples');
    // Memory did not move between the two recordings; CPU counters moved a little (busy loop).
    expect(docker.memoryUsageBytes).toBe(cgroup.memoryUsageBytes);
    expect(docker.memoryWorkingSetBytes).toBe(cgroup.memoryWorkingSetBytes);
    expect(docker.memoryLimitBytes).toBe(cgroup.memoryLimitBytes);
    expect(docker.cpuUsageSeconds).toBeGreaterThanOrEqual(cgroup.cpuUsageSeconds);
    expect(docker.cpuUsageSeconds).toBeLessThan(cgroup.cpuUsageSeconds * 1.01);
    expect(docker.cpuCfsPeriods - cgroup.cpuCfsPeriods).toBeGreaterThanOrEqual(0);
    expect(docker.cpuCfsPeriods - cgroup.cpuCfsPeriods).toBeLessThanOrEqual(2);
    expect(docker.cpuCfsThrottledSeconds).toBeCloseTo(cgroup.cpuCfsThrottledSeconds, 0);
    expect(docker.pids).toBe(cgroup.pids);
    expect(docker.oomKills).toBeNull();
    expect(docker.timestampMs).toBe(Date.UTC(2026, 10, 25, 8, 3, 22, 511));
  });

  it('reads a limit equal to host memory as no limit', () => {
    const stats = load('docker-stats-v1-unlimited.json');
    expect(stats.memory_stats?.limit).toBe(HOST_MEMORY_BYTES);
    expect(mapDockerStats('x', stats, HOST_MEMORY_BYTES)?.memoryLimitBytes).toBeNull();
    expect(mapDockerStats('x', stats, HOST_MEMORY_BYTES * 2)?.memoryLimitBytes).toBe(HOST_MEMORY_BYTES);
  });

  it('uses inactive_file on cgroup v2 hosts, where total_inactive_file does not exist', () => {
    const usage = mapDockerStats(
      'x',
      { read: '2026-01-01T00:00:00.5Z', memory_stats: { usage: 1000, limit: 4000, stats: { inactive_file: 300 } } },
      1e12,
    );
    expect(usage).toMatchObject({ memoryWorkingSetBytes: 700, memoryLimitBytes: 4000, timestampMs: Date.UTC(2026, 0, 1, 0, 0, 0, 500) });
  });

  it('returns no sample for a container that is not running (zero time, zero values)', () => {
    expect(mapDockerStats('x', { read: '0001-01-01T00:00:00Z', cpu_stats: { cpu_usage: { total_usage: 0 } } }, 1e12)).toBeNull();
    expect(mapDockerStats('x', {}, 1e12)).toBeNull();
  });
});
