import { describe, expect, it } from 'vitest';
import type { AgentJson } from '../api-types.js';
import type { NodeJson } from '../node-types.js';
import { agentTopRow, formatCpuCores, formatMemoryBytes, nodeTopRow, type AgentUsageJson } from './top-command.js';

const MiB = 1024 * 1024;
const agent = (usage?: AgentUsageJson): AgentJson & { usage?: AgentUsageJson } => ({ name: 'web', ...(usage ? { usage } : {}) }) as AgentJson & { usage?: AgentUsageJson };

describe('top output', () => {
  it('formats CPU in millicores and memory in MiB, as kubectl top does', () => {
    expect(formatCpuCores(0.4996)).toBe('500m');
    expect(formatCpuCores(0)).toBe('0m');
    expect(formatMemoryBytes(64 * MiB)).toBe('64Mi');
    expect(formatMemoryBytes(1.6 * MiB)).toBe('2Mi');
    expect(formatMemoryBytes(300 * 1024)).toBe('300Ki');
  });

  it('shows usage against the limits, and <unknown> before the second sample', () => {
    const usage = { cpuCores: 0.25, memoryWorkingSetBytes: 32 * MiB, memoryLimitBytes: 128 * MiB, cpuLimitCores: 0.5, sampledAt: '2026-11-03T10:00:00Z' };
    expect(agentTopRow(agent(usage))).toEqual(['web', '250m', '50%', '32Mi', '25%']);
    expect(agentTopRow(agent({ ...usage, cpuCores: null }))).toEqual(['web', '<unknown>', '<unknown>', '32Mi', '25%']);
    expect(agentTopRow(agent())).toEqual(['web', '<unknown>', '<unknown>', '<unknown>', '<unknown>']);
    expect(agentTopRow(agent({ ...usage, memoryLimitBytes: 0 }))[4]).toBe('<unknown>');
  });

  const node = (usage?: NodeJson['usage']): NodeJson =>
    ({
      id: 'n1',
      simulated: usage === undefined,
      allocated: { cpu: '750m', memory: '96Mi', cpuMillicores: 750, memoryMiB: 96, agents: 2, gpus: 0, gpuIds: [] },
      allocatable: { cpu: '2', memory: '4Gi', cpuMillicores: 2000, memoryMiB: 4096, maxAgents: 110, gpus: 0 },
      ...(usage ? { usage } : {}),
    }) as unknown as NodeJson;

  it('shows a node\'s measured usage against allocatable, then allocation and agent counts', () => {
    const usage = { cpuMillicores: 1234, memoryWorkingSetBytes: 1024 * MiB, agents: 2, sampledAt: '2026-11-03T10:00:00Z' };
    expect(nodeTopRow(node(usage))).toEqual(['n1', '1234m', '62%', '1024Mi', '25%', '750m/2 (38%)', '96Mi/4Gi (2%)', '2/110']);
    // An idle measured node reads zero, not unknown.
    expect(nodeTopRow(node({ ...usage, cpuMillicores: 0, memoryWorkingSetBytes: 0, agents: 0 })).slice(1, 5)).toEqual(['0m', '0%', '0Ki', '0%']);
  });

  it('shows <unknown> for a node without usage (simulated, not sampled yet) or without a CPU rate yet, and keeps the allocation', () => {
    expect(nodeTopRow(node())).toEqual(['n1', '<unknown>', '<unknown>', '<unknown>', '<unknown>', '750m/2 (38%)', '96Mi/4Gi (2%)', '2/110']);
    const firstSample = { cpuMillicores: null, memoryWorkingSetBytes: 300 * 1024, agents: 1, sampledAt: '2026-11-03T10:00:00Z' };
    expect(nodeTopRow(node(firstSample)).slice(1, 5)).toEqual(['<unknown>', '<unknown>', '300Ki', '0%']);
    // Nothing allocatable (a zero-capacity node): no percentage rather than Infinity.
    const empty = { ...node(firstSample), allocatable: { cpu: '0', memory: '0', cpuMillicores: 0, memoryMiB: 0, maxAgents: 0, gpus: 0 } } as NodeJson;
    expect(nodeTopRow(empty)[4]).toBe('<unknown>');
  });
});
