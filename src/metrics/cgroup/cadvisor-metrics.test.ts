import { describe, expect, it } from 'vitest';
import { CADVISOR_METRICS, toCadvisorSamples } from './cadvisor-metrics.js';
import type { ContainerUsage } from './container-usage.js';

const usage: ContainerUsage = {
  containerId: 'c1',
  source: 'cgroup',
  cpuUsageSeconds: 12.5,
  memoryUsageBytes: 3000,
  memoryWorkingSetBytes: 2000,
  memoryLimitBytes: 4096,
  cpuCfsPeriods: 10,
  cpuCfsThrottledPeriods: 4,
  cpuCfsThrottledSeconds: 0.25,
  pids: 2,
  oomKills: 1,
  timestampMs: 0,
};

describe('toCadvisorSamples', () => {
  it('maps every field to its cAdvisor metric', () => {
    expect(Object.fromEntries(toCadvisorSamples(usage).map((s) => [s.name, s.value]))).toEqual({
      container_cpu_usage_seconds_total: 12.5,
      container_memory_working_set_bytes: 2000,
      container_memory_usage_bytes: 3000,
      container_spec_memory_limit_bytes: 4096,
      container_cpu_cfs_periods_total: 10,
      container_cpu_cfs_throttled_periods_total: 4,
      container_cpu_cfs_throttled_seconds_total: 0.25,
      container_oom_events_total: 1,
    });
  });

  it('exports 0 for no memory limit and leaves out OOM events nobody counted', () => {
    const samples = toCadvisorSamples({ ...usage, memoryLimitBytes: null, oomKills: null });
    expect(samples.find((s) => s.name === 'container_spec_memory_limit_bytes')?.value).toBe(0);
    expect(samples.some((s) => s.name === 'container_oom_events_total')).toBe(false);
  });

  it('describes every metric it can emit, counters ending in _total', () => {
    const described = new Set(CADVISOR_METRICS.map((m) => m.name));
    for (const sample of toCadvisorSamples(usage)) expect(described.has(sample.name)).toBe(true);
    for (const metric of CADVISOR_METRICS) expect(metric.type === 'counter').toBe(metric.name.endsWith('_total'));
  });
});
