import type { ContainerUsage } from './container-usage.js';

/** The cAdvisor metric names we can fill from a ContainerUsage. */
export type CadvisorMetricName =
  | 'container_cpu_usage_seconds_total'
  | 'container_memory_working_set_bytes'
  | 'container_memory_usage_bytes'
  | 'container_spec_memory_limit_bytes'
  | 'container_cpu_cfs_periods_total'
  | 'container_cpu_cfs_throttled_periods_total'
  | 'container_cpu_cfs_throttled_seconds_total'
  | 'container_oom_events_total';

/** Name, type and help text of one metric, as a prom-client Counter/Gauge wants them. */
export interface CadvisorMetricDescriptor {
  name: CadvisorMetricName;
  type: 'counter' | 'gauge';
  help: string;
}

/** One value of one metric for one container; labels (id, name, agent, ...) are the caller's. */
export interface CadvisorSample {
  name: CadvisorMetricName;
  value: number;
}

/** Help texts follow cAdvisor's, so dashboards built for cAdvisor read the same. */
export const CADVISOR_METRICS: readonly CadvisorMetricDescriptor[] = [
  { name: 'container_cpu_usage_seconds_total', type: 'counter', help: 'Cumulative cpu time consumed in seconds.' },
  { name: 'container_memory_working_set_bytes', type: 'gauge', help: 'Current working set in bytes.' },
  { name: 'container_memory_usage_bytes', type: 'gauge', help: 'Current memory usage in bytes, including all memory regardless of when it was accessed.' },
  { name: 'container_spec_memory_limit_bytes', type: 'gauge', help: 'Memory limit for the container.' },
  { name: 'container_cpu_cfs_periods_total', type: 'counter', help: 'Number of elapsed enforcement period intervals.' },
  { name: 'container_cpu_cfs_throttled_periods_total', type: 'counter', help: 'Number of throttled period intervals.' },
  { name: 'container_cpu_cfs_throttled_seconds_total', type: 'counter', help: 'Total time duration the container has been throttled.' },
  { name: 'container_oom_events_total', type: 'counter', help: 'Count of out of memory events observed for the container.' },
];

/**
 * Maps one sample to cAdvisor metric values. A container without a memory limit gets
 * container_spec_memory_limit_bytes 0 (our choice, rather than the kernel's sentinel
 * 9223372036854771712 or "max"), so the usual `> 0` filter in dashboards drops it.
 * container_oom_events_total is left out when the source cannot tell (Docker's stats API,
 * old v1 kernels): a missing series is honest, a zero would claim "no OOM kills".
 */
export function toCadvisorSamples(usage: ContainerUsage): CadvisorSample[] {
  const samples: CadvisorSample[] = [
    { name: 'container_cpu_usage_seconds_total', value: usage.cpuUsageSeconds },
    { name: 'container_memory_working_set_bytes', value: usage.memoryWorkingSetBytes },
    { name: 'container_memory_usage_bytes', value: usage.memoryUsageBytes },
    { name: 'container_spec_memory_limit_bytes', value: usage.memoryLimitBytes ?? 0 },
    { name: 'container_cpu_cfs_periods_total', value: usage.cpuCfsPeriods },
    { name: 'container_cpu_cfs_throttled_periods_total', value: usage.cpuCfsThrottledPeriods },
    { name: 'container_cpu_cfs_throttled_seconds_total', value: usage.cpuCfsThrottledSeconds },
  ];
  if (usage.oomKills !== null) samples.push({ name: 'container_oom_events_total', value: usage.oomKills });
  return samples;
}
