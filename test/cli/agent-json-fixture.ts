import type { AgentJson } from '../../src/cli/api-types.js';

/** An agent as the API returns it, for CLI tests; override any part. */
export function agentJson(overrides: { name?: string; id?: string; status?: Partial<AgentJson['status']>; spec?: Partial<AgentJson['spec']> } & Partial<Omit<AgentJson, 'status' | 'spec'>> = {}): AgentJson {
  const { status, spec, ...rest } = overrides;
  const createdAt = rest.createdAt ?? '2026-01-01T00:00:00.000Z';
  return {
    id: 'a1b2c3d4e5f6a7b8',
    tenantId: 'default',
    name: 'summarizer',
    labels: {},
    desiredState: 'running',
    createdAt,
    updatedAt: createdAt,
    version: 1,
    ...rest,
    spec: {
      image: 'agent-samples/echo:1',
      command: [],
      args: [],
      env: {},
      resources: { cpu: '100m', memory: '128Mi', gpu: 0, limits: { cpu: '100m', memory: '128Mi' }, cpuMillicores: 100, memoryMiB: 128, cpuLimitMillicores: 100, memoryLimitMiB: 128 },
      restartPolicy: 'Never',
      schedulingPolicy: 'balanced',
      priority: 0,
      nodeSelector: {},
      tolerations: [],
      ...spec,
    },
    status: { phase: 'Pending', restarts: 0, createdAt, ...status },
  };
}
