import { CADVISOR_METRICS, toCadvisorSamples } from './cgroup/cadvisor-metrics.js';
import type { AgentContainerView } from './usage-sampler.js';

/** CFS period Docker uses for NanoCpus (--cpus): 100 ms. */
const CFS_PERIOD_US = 100_000;

const SPEC_CPU_METRICS = [
  { name: 'container_spec_cpu_quota', type: 'gauge' as const, help: 'CPU quota of the container in microseconds per period.' },
  { name: 'container_spec_cpu_period', type: 'gauge' as const, help: 'CPU period of the container in microseconds.' },
];

/** Every per-container metric name renderCadvisorExposition can write. */
export const CADVISOR_METRIC_NAMES: readonly string[] = [...CADVISOR_METRICS.map((m) => m.name), ...SPEC_CPU_METRICS.map((m) => m.name)];

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

/**
 * Per-container metrics under cAdvisor's names, labelled {agent, agent_name, tenant, node},
 * in Prometheus text format. Like cAdvisor, each sample carries the time it was taken: the
 * values come from the sampler's last round, up to one interval (plus event-loop delay)
 * before the scrape, and without the timestamp Prometheus would file them under the scrape
 * time, so rate() over short windows would be off by that jitter. The cost (also as with
 * cAdvisor): such series are not marked stale when they vanish; they fade after the query
 * lookback (5 minutes by default).
 */
export function renderCadvisorExposition(views: readonly AgentContainerView[]): string {
  const byName = new Map<string, string[]>();
  const add = (name: string, labels: string, value: number, timestampMs: number): void => {
    const lines = byName.get(name) ?? [];
    lines.push(`${name}{${labels}} ${value} ${Math.round(timestampMs)}`);
    byName.set(name, lines);
  };
  for (const v of views) {
    const u = v.usage;
    if (!u) continue;
    const labels = `agent="${escapeLabel(v.agentId)}",agent_name="${escapeLabel(v.agentName)}",tenant="${escapeLabel(v.tenantId)}",node="${escapeLabel(v.node)}"`;
    for (const s of toCadvisorSamples(u)) add(s.name, labels, s.value, u.timestampMs);
    if (v.cpuLimitMillicores > 0) {
      add('container_spec_cpu_quota', labels, v.cpuLimitMillicores * (CFS_PERIOD_US / 1000), u.timestampMs);
      add('container_spec_cpu_period', labels, CFS_PERIOD_US, u.timestampMs);
    }
  }
  let out = '';
  for (const d of [...CADVISOR_METRICS, ...SPEC_CPU_METRICS]) {
    out += `# HELP ${d.name} ${escapeHelp(d.help)}\n# TYPE ${d.name} ${d.type}\n`;
    for (const line of byName.get(d.name) ?? []) out += `${line}\n`;
  }
  return out;
}
