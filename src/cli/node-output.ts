import { stringify as toYaml } from 'yaml';
import type { NodeDetailJson, NodeJson } from './node-types.js';
import { ageOf, formatTable, NONE, type OutputFormat } from './output.js';

/** kubectl's STATUS column: Ready/NotReady/Unknown, then SchedulingDisabled and Unhealthy. */
export function nodeStatus(node: NodeJson): string {
  const ready = node.conditions.find((c) => c.type === 'Ready');
  const parts = [ready?.status === 'True' ? 'Ready' : ready?.status === 'Unknown' ? 'Unknown' : 'NotReady'];
  if (node.cordoned) parts.push('SchedulingDisabled');
  if (node.unhealthy) parts.push('Unhealthy');
  return parts.join(',');
}

const pct = (used: number, total: number): string => (total > 0 ? `${Math.round((used / total) * 100)}%` : '-');

const COLUMNS = ['NAME', 'STATUS', 'DRIVER', 'AGENTS', 'CPU', 'MEMORY', 'GPU'];
const WIDE = [...COLUMNS, 'LABELS', 'TAINTS'];

function row(n: NodeJson, wide: boolean): string[] {
  const r = [
    n.id,
    nodeStatus(n),
    n.simulated ? `${n.driver} (simulated)` : n.driver,
    `${n.allocated.agents}/${n.allocatable.maxAgents}`,
    `${n.allocated.cpu}/${n.allocatable.cpu} (${pct(n.allocated.cpuMillicores, n.allocatable.cpuMillicores)})`,
    `${n.allocated.memory}/${n.allocatable.memory} (${pct(n.allocated.memoryMiB, n.allocatable.memoryMiB)})`,
    `${n.allocated.gpus}/${n.allocatable.gpus}`,
  ];
  if (!wide) return r;
  const labels = Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || NONE;
  const taints = n.taints.map((t) => `${t.key}${t.value !== undefined ? `=${t.value}` : ''}:${t.effect}`).join(',') || NONE;
  return [...r, labels, taints];
}

export function renderNodes(nodes: readonly NodeJson[], format: OutputFormat, single = false): string {
  switch (format) {
    case 'json':
      return JSON.stringify(single && nodes.length === 1 ? nodes[0] : { items: nodes }, null, 2) + '\n';
    case 'yaml':
      return toYaml(single && nodes.length === 1 ? nodes[0] : { items: nodes });
    case 'name':
      return nodes.map((n) => `node/${n.id}\n`).join('');
    case 'table':
    case 'wide':
      return nodes.length ? formatTable(format === 'wide' ? WIDE : COLUMNS, nodes.map((n) => row(n, format === 'wide'))) : '';
  }
}

/** `agentctl describe node` in kubectl's layout. */
export function describeNode(n: NodeDetailJson, nowMs: number): string {
  const lines: string[] = [];
  const kv = (label: string, value: string): void => void lines.push(`${(label + ':').padEnd(14)}${value}`);
  kv('Name', n.id);
  kv('Driver', n.simulated ? `${n.driver} (SIMULATED: capacity is not real)` : n.driver);
  kv('Status', nodeStatus(n));
  kv('Labels', Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join('\n              ') || NONE);
  kv('Taints', n.taints.map((t) => `${t.key}${t.value !== undefined ? `=${t.value}` : ''}:${t.effect}`).join('\n              ') || NONE);
  kv('Unschedulable', String(n.cordoned));
  if (n.info) kv('Runtime', `${n.info.runtimeVersion} (${n.info.os}/${n.info.arch}; isolation ${n.info.isolationClasses.join(', ') || NONE})`);
  lines.push('Conditions:');
  lines.push(
    ...formatTable(
      ['  TYPE', 'STATUS', 'LAST HEARTBEAT', 'LAST TRANSITION', 'REASON', 'MESSAGE'],
      n.conditions.map((c) => [`  ${c.type}`, c.status, c.lastHeartbeatTime ? `${ageOf(c.lastHeartbeatTime, nowMs)} ago` : NONE, `${ageOf(c.lastTransitionTime, nowMs)} ago`, c.reason, c.message]),
    )
      .trimEnd()
      .split('\n'),
  );
  lines.push('Resources:');
  lines.push(
    ...formatTable(
      ['  RESOURCE', 'CAPACITY', 'RESERVED', 'ALLOCATABLE', 'ALLOCATED', 'FREE'],
      [
        ['  cpu', n.capacity.cpu, n.reserved.cpu, n.allocatable.cpu, n.allocated.cpu, n.free.cpu],
        ['  memory', n.capacity.memory, n.reserved.memory, n.allocatable.memory, n.allocated.memory, n.free.memory],
        ['  agents', String(n.capacity.maxAgents), '0', String(n.allocatable.maxAgents), String(n.allocated.agents), String(n.free.agents)],
        ['  gpu', String(n.capacity.gpus.length), '0', String(n.allocatable.gpus), `${n.allocated.gpus}${n.allocated.gpuIds.length ? ` (${n.allocated.gpuIds.join(',')})` : ''}`, String(n.free.gpus)],
      ],
    )
      .trimEnd()
      .split('\n'),
  );
  lines.push(`Agents (${n.agentList.length}):`);
  if (n.agentList.length === 0) lines.push(`  ${NONE}`);
  else lines.push(...formatTable(['  NAME', 'ID', 'TENANT', 'PHASE'], n.agentList.map((a) => [`  ${a.name}`, a.id, a.tenantId, a.phase])).trimEnd().split('\n'));
  return lines.join('\n') + '\n';
}
