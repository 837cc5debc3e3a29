import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../domain/clock.js';
import type { ContainerUsage } from './cgroup/container-usage.js';
import { PlatformMetrics, type AgentCount } from './platform-metrics.js';
import type { AgentContainerView } from './usage-sampler.js';

/** Value of one series in a text exposition, or undefined when absent. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[3] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[4]);
  }
  return undefined;
}

const usage = (over: Partial<ContainerUsage> = {}): ContainerUsage => ({
  containerId: 'c'.repeat(64),
  source: 'cgroup',
  timestampMs: 1_000,
  cpuUsageSeconds: 12.5,
  memoryUsageBytes: 80 << 20,
  memoryWorkingSetBytes: 64 << 20,
  memoryLimitBytes: 256 << 20,
  cpuCfsPeriods: 100,
  cpuCfsThrottledPeriods: 40,
  cpuCfsThrottledSeconds: 1.5,
  pids: 3,
  oomKills: 0,
  ...over,
});

const view = (over: Partial<AgentContainerView> = {}): AgentContainerView => ({
  agentId: 'agent1',
  agentName: 'web',
  tenantId: 't1',
  node: 'n1',
  phase: 'Running',
  restarts: 2,
  cpuRequestMillicores: 250,
  memoryRequestMiB: 128,
  gpus: 0,
  cpuLimitMillicores: 500,
  memoryLimitMiB: 256,
  usage: usage(),
  ...over,
});

describe('PlatformMetrics', () => {
  it('uses a registry of its own, not prom-client’s global one, so two instances do not collide', async () => {
    const a = new PlatformMetrics();
    const b = new PlatformMetrics();
    expect(a.registry).not.toBe(globalRegistry);
    expect(globalRegistry.getSingleMetric('agent_platform_scheduling_attempts_total')).toBeUndefined();
    a.observeScheduling('scheduled', 0.001);
    expect(valueOf(await a.metrics(), 'agent_platform_scheduling_attempts_total', { result: 'scheduled' })).toBe(1);
    expect(valueOf(await b.metrics(), 'agent_platform_scheduling_attempts_total', { result: 'scheduled' })).toBeUndefined();
  });

  it('names follow Prometheus conventions: prefix, _total counters, base-unit suffixes', async () => {
    const m = new PlatformMetrics();
    const metrics = await m.registry.getMetricsAsJSON();
    expect(metrics.length).toBeGreaterThan(30);
    for (const { name, type: metricType } of metrics) {
      const type = String(metricType);
      expect(name.startsWith('agent_platform_') || name.startsWith('container_'), name).toBe(true);
      // prom-client's default process metrics have their own (mostly conventional) names.
      if (/^agent_platform_(process|nodejs)_/.test(name)) continue;
      if (type === 'counter') expect(name, `${name} is a counter`).toMatch(/_total$/);
      if (type !== 'counter') expect(name, `${name} is a ${type}`).not.toMatch(/_total$/);
      if (type === 'histogram') expect(name).toMatch(/_seconds$/);
      expect(name).not.toMatch(/_(ms|milliseconds|mib|kb|mb)(_|$)/i);
    }
    const names = m.seriesNames();
    for (const n of [
      'agent_platform_http_request_duration_seconds_bucket',
      'agent_platform_agents',
      'agent_platform_scheduling_attempts_total',
      'agent_platform_scheduling_duration_seconds_count',
      'agent_platform_reconcile_duration_seconds_sum',
      'agent_platform_workqueue_depth',
      'agent_platform_runtime_operation_duration_seconds_bucket',
      'agent_platform_runtime_operation_errors_total',
      'agent_platform_node_capacity',
      'agent_platform_node_allocated',
      'agent_platform_node_free',
      'agent_platform_node_simulated',
      'agent_platform_node_ready',
      'agent_platform_ready',
      'agent_platform_tenant_quota_used',
      'agent_platform_tenant_quota_limit',
      'agent_platform_agent_restarts_total',
      'agent_platform_agent_oom_kills_total',
      'agent_platform_process_cpu_seconds_total',
      'container_cpu_usage_seconds_total',
      'container_memory_working_set_bytes',
      'container_spec_cpu_quota',
    ]) {
      expect(names, n).toContain(n);
    }
  });

  it('records HTTP, scheduling, reconcile and runtime observations with their labels', async () => {
    const m = new PlatformMetrics({}, { defaultMetrics: false });
    m.observeHttpRequest('GET', '/api/v1/agents/:id', 200, 0.003);
    m.observeHttpRequest('GET', '/api/v1/agents/:id', 200, 0.2);
    m.observeScheduling('unschedulable', 0.0002);
    m.observeReconcile('error', 1.5);
    m.observeRuntimeOperation('docker', 'create', 0.02, false);
    m.observeRuntimeOperation('docker', 'create', 0.5, true);
    const text = await m.metrics();
    expect(valueOf(text, 'agent_platform_http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/agents/:id', status: '200' })).toBe(2);
    expect(valueOf(text, 'agent_platform_http_request_duration_seconds_bucket', { route: '/api/v1/agents/:id', le: '0.005' })).toBe(1);
    expect(valueOf(text, 'agent_platform_scheduling_attempts_total', { result: 'unschedulable' })).toBe(1);
    expect(valueOf(text, 'agent_platform_scheduling_duration_seconds_bucket', { result: 'unschedulable', le: '0.00025' })).toBe(1);
    expect(valueOf(text, 'agent_platform_reconcile_duration_seconds_sum', { result: 'error' })).toBe(1.5);
    expect(valueOf(text, 'agent_platform_runtime_operation_duration_seconds_count', { driver: 'docker', operation: 'create' })).toBe(2);
    expect(valueOf(text, 'agent_platform_runtime_operation_errors_total', { driver: 'docker', operation: 'create' })).toBe(1);
  });

  it('reads agent counts at scrape time, zero-fills phases, and caches them for 1 s', async () => {
    const clock = new ManualClock(10_000);
    let calls = 0;
    let counts: AgentCount[] = [{ tenantId: 't1', phase: 'Running', count: 3 }];
    const m = new PlatformMetrics({ countAgents: async () => (calls++, counts) }, { clock, defaultMetrics: false });
    let text = await m.metrics();
    expect(valueOf(text, 'agent_platform_agents', { tenant: 't1', phase: 'Running' })).toBe(3);
    expect(valueOf(text, 'agent_platform_agents', { tenant: 't1', phase: 'Pending' })).toBe(0);
    counts = [{ tenantId: 't1', phase: 'Failed', count: 1 }];
    clock.advance(999);
    text = await m.metrics();
    expect(calls).toBe(1);
    expect(valueOf(text, 'agent_platform_agents', { tenant: 't1', phase: 'Running' })).toBe(3);
    clock.advance(1);
    text = await m.metrics();
    expect(calls).toBe(2);
    expect(valueOf(text, 'agent_platform_agents', { tenant: 't1', phase: 'Running' })).toBe(0);
    expect(valueOf(text, 'agent_platform_agents', { tenant: 't1', phase: 'Failed' })).toBe(1);
  });

  it('a failing store leaves agent counts out instead of failing the scrape', async () => {
    const m = new PlatformMetrics({ countAgents: () => Promise.reject(new Error('down')), ready: () => false }, { defaultMetrics: false });
    const text = await m.metrics();
    expect(valueOf(text, 'agent_platform_agents')).toBeUndefined();
    expect(valueOf(text, 'agent_platform_ready')).toBe(0);
  });

  it('exports node capacity, allocation, free, readiness and the simulated flag per resource', async () => {
    const m = new PlatformMetrics(
      {
        nodes: () => [
          { node: 'n1', simulated: false, ready: true, capacity: { cpuMillicores: 2000, memoryBytes: 4 << 30, gpus: 1 }, allocated: { cpuMillicores: 500, memoryBytes: 1 << 30, gpus: 1 } },
          { node: 'sim-1', simulated: true, ready: false, capacity: { cpuMillicores: 8000, memoryBytes: 0, gpus: 0 }, allocated: { cpuMillicores: 0, memoryBytes: 0, gpus: 0 } },
        ],
        queueDepth: () => 7,
      },
      { defaultMetrics: false },
    );
    const text = await m.metrics();
    expect(valueOf(text, 'agent_platform_node_capacity', { node: 'n1', resource: 'cpu_millicores' })).toBe(2000);
    expect(valueOf(text, 'agent_platform_node_allocated', { node: 'n1', resource: 'memory_bytes' })).toBe(1 << 30);
    expect(valueOf(text, 'agent_platform_node_free', { node: 'n1', resource: 'cpu_millicores' })).toBe(1500);
    expect(valueOf(text, 'agent_platform_node_free', { node: 'n1', resource: 'gpus' })).toBe(0);
    expect(valueOf(text, 'agent_platform_node_ready', { node: 'n1' })).toBe(1);
    expect(valueOf(text, 'agent_platform_node_ready', { node: 'sim-1' })).toBe(0);
    expect(valueOf(text, 'agent_platform_node_simulated', { node: 'sim-1' })).toBe(1);
    expect(valueOf(text, 'agent_platform_node_simulated', { node: 'n1' })).toBe(0);
    expect(valueOf(text, 'agent_platform_workqueue_depth')).toBe(7);
  });

  it('exports container samples under cAdvisor names with agent labels, plus restarts and CPU quota', async () => {
    let views: AgentContainerView[] = [view(), view({ agentId: 'agent2', agentName: 'idle', usage: undefined, restarts: 0 })];
    const m = new PlatformMetrics({ containers: () => views }, { defaultMetrics: false });
    let text = await m.metrics();
    const labels = { agent: 'agent1', agent_name: 'web', tenant: 't1', node: 'n1' };
    expect(text).toContain('# TYPE container_cpu_usage_seconds_total counter');
    expect(text).toContain('# TYPE container_memory_working_set_bytes gauge');
    // Like cAdvisor: each sample carries the time it was taken, not the scrape time.
    expect(text).toContain('container_cpu_usage_seconds_total{agent="agent1",agent_name="web",tenant="t1",node="n1"} 12.5 1000\n');
    expect(valueOf(text, 'container_cpu_usage_seconds_total', labels)).toBe(12.5);
    expect(valueOf(text, 'container_memory_working_set_bytes', labels)).toBe(64 << 20);
    expect(valueOf(text, 'container_memory_usage_bytes', labels)).toBe(80 << 20);
    expect(valueOf(text, 'container_spec_memory_limit_bytes', labels)).toBe(256 << 20);
    expect(valueOf(text, 'container_cpu_cfs_throttled_periods_total', labels)).toBe(40);
    expect(valueOf(text, 'container_oom_events_total', labels)).toBe(0);
    expect(valueOf(text, 'container_spec_cpu_quota', labels)).toBe(50_000);
    expect(valueOf(text, 'container_spec_cpu_period', labels)).toBe(100_000);
    expect(valueOf(text, 'agent_platform_agent_restarts_total', { agent: 'agent1', tenant: 't1', node: 'n1' })).toBe(2);
    // Not sampled: restarts yes, container series no.
    expect(valueOf(text, 'agent_platform_agent_restarts_total', { agent: 'agent2' })).toBe(0);
    expect(valueOf(text, 'container_cpu_usage_seconds_total', { agent: 'agent2' })).toBeUndefined();

    // A new sampler round replaces the values; counters may be set to any sampled value.
    views = [view({ usage: usage({ cpuUsageSeconds: 20, oomKills: null }) })];
    text = await m.metrics();
    expect(valueOf(text, 'container_cpu_usage_seconds_total', labels)).toBe(20);
    expect(valueOf(text, 'container_oom_events_total', labels)).toBeUndefined();
    expect(valueOf(text, 'agent_platform_agent_restarts_total', { agent: 'agent2' })).toBeUndefined();
  });

  it('exports OOM kill counts from 0 for live agents and keeps counts of agents that ended', async () => {
    let views: AgentContainerView[] = [view(), view({ agentId: 'agent2' })];
    const m = new PlatformMetrics({ containers: () => views }, { defaultMetrics: false });
    expect(valueOf(await m.metrics(), 'agent_platform_agent_oom_kills_total', { agent: 'agent1', tenant: 't1', node: 'n1' })).toBe(0);
    m.countOomKill('agent1', 't1');
    m.countOomKill('agent1', 't1');
    expect(valueOf(await m.metrics(), 'agent_platform_agent_oom_kills_total', { agent: 'agent1', tenant: 't1', node: 'n1' })).toBe(2);
    views = [];
    const text = await m.metrics();
    // Ended: the count stays, labelled with the node the agent was killed on.
    expect(valueOf(text, 'agent_platform_agent_oom_kills_total', { agent: 'agent1', tenant: 't1', node: 'n1' })).toBe(2);
    expect(valueOf(text, 'agent_platform_agent_oom_kills_total', { agent: 'agent2' })).toBeUndefined();
    // A caller that knows the node says so; the live view is not needed then.
    m.countOomKill('agent3', 't2', 'n7');
    expect(valueOf(await m.metrics(), 'agent_platform_agent_oom_kills_total', { agent: 'agent3', tenant: 't2', node: 'n7' })).toBe(1);
  });

  it('exports tenant quota used and limit from the tenancy source', async () => {
    const m = new PlatformMetrics({ tenantQuotas: () => [{ tenantId: 't1', resource: 'cpu_millicores', used: 900, limit: 1000 }] }, { defaultMetrics: false });
    const text = await m.metrics();
    expect(valueOf(text, 'agent_platform_tenant_quota_used', { tenant: 't1', resource: 'cpu_millicores' })).toBe(900);
    expect(valueOf(text, 'agent_platform_tenant_quota_limit', { tenant: 't1', resource: 'cpu_millicores' })).toBe(1000);
  });
});
