import { describe, expect, it } from 'vitest';
import { CADVISOR_METRIC_NAMES, renderCadvisorExposition } from './cadvisor-exposition.js';
import type { AgentContainerView } from './usage-sampler.js';

const view = (over: Partial<AgentContainerView>): AgentContainerView => ({
  agentId: 'a1',
  agentName: 'web',
  tenantId: 't1',
  node: 'n1',
  phase: 'Running',
  restarts: 0,
  cpuRequestMillicores: 100,
  memoryRequestMiB: 64,
  gpus: 0,
  cpuLimitMillicores: 250,
  memoryLimitMiB: 64,
  usage: {
    containerId: 'c',
    source: 'docker-api',
    timestampMs: 1_767_225_600_123,
    cpuUsageSeconds: 3.25,
    memoryUsageBytes: 2048,
    memoryWorkingSetBytes: 1024,
    memoryLimitBytes: null,
    cpuCfsPeriods: 10,
    cpuCfsThrottledPeriods: 5,
    cpuCfsThrottledSeconds: 0.5,
    pids: null,
    oomKills: null,
  },
  ...over,
});

describe('renderCadvisorExposition', () => {
  it('writes HELP and TYPE for every name, even with no containers', () => {
    const text = renderCadvisorExposition([]);
    for (const name of CADVISOR_METRIC_NAMES) expect(text).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'));
    expect(text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([]);
  });

  it('writes one timestamped sample per metric and container, escaping label values', () => {
    const text = renderCadvisorExposition([view({ tenantId: 'te"n\\t\nx' }), view({ agentId: 'a2', usage: undefined })]);
    const labels = 'agent="a1",agent_name="web",tenant="te\\"n\\\\t\\nx",node="n1"';
    expect(text).toContain(`container_cpu_usage_seconds_total{${labels}} 3.25 1767225600123\n`);
    expect(text).toContain(`container_spec_memory_limit_bytes{${labels}} 0 1767225600123\n`);
    expect(text).toContain(`container_spec_cpu_quota{${labels}} 25000 1767225600123\n`);
    expect(text).toContain(`container_spec_cpu_period{${labels}} 100000 1767225600123\n`);
    // Unknown OOM count (Docker stats API): no series rather than a false 0.
    expect(text).not.toMatch(/^container_oom_events_total\{/m);
    expect(text).not.toContain('agent="a2"');
  });

  it('leaves out the CPU quota of a container without a CPU limit', () => {
    const text = renderCadvisorExposition([view({ cpuLimitMillicores: 0 })]);
    expect(text).not.toMatch(/^container_spec_cpu_(quota|period)\{/m);
    expect(text).toMatch(/^container_cpu_usage_seconds_total\{/m);
  });
});
