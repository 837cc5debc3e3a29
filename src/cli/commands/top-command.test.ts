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

  it('shows node allocation against allocatable, and agent counts', () => {
    const node = {
      id: 'n1',
      allocated: { cpu: '750m', memory: '96Mi', cpuMillicores: 750, memoryMiB: 96, agents: 2, gpus: 0, gpuIds: [] },
      allocatable: { cpu: '2', memory: '4Gi', cpuMillicores: 2000, memoryMiB: 4096, maxAgents: 110, gpus: 0 },
    } as unknown as NodeJson;
    expect(nodeTopRow(node)).toEqual(['n1', '750m/2 (38%)', '96Mi/4Gi (2%)', '2/110']);
  });
});
