import type { Agent } from '../domain/agent.js';
import type { PlatformEvent } from '../domain/event.js';
import { formatCpu, formatMemory } from '../domain/quantity.js';
import type { AgentResponse } from './schemas/agent-schema.js';
import { joinEnv } from '../security/env-refs.js';
import { networkPolicyOf } from '../security/network-policy.js';

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

/** Domain agent -> API JSON (quantities formatted back, times as RFC 3339). */
export function toAgentResponse(a: Agent): AgentResponse {
  const r = a.spec.resources;
  const s = a.status;
  return {
    id: a.id,
    tenantId: a.tenantId,
    name: a.name,
    labels: a.labels,
    spec: {
      image: a.spec.image,
      command: a.spec.command,
      args: a.spec.args,
      env: joinEnv(a.spec),
      ...(a.spec.workingDir !== undefined ? { workingDir: a.spec.workingDir } : {}),
      resources: {
        cpu: formatCpu(r.cpuMillicores),
        memory: formatMemory(r.memoryMiB),
        gpu: r.gpu,
        limits: { cpu: formatCpu(r.cpuLimitMillicores), memory: formatMemory(r.memoryLimitMiB) },
        cpuMillicores: r.cpuMillicores,
        memoryMiB: r.memoryMiB,
        cpuLimitMillicores: r.cpuLimitMillicores,
        memoryLimitMiB: r.memoryLimitMiB,
      },
      restartPolicy: a.spec.restartPolicy,
      schedulingPolicy: a.spec.schedulingPolicy,
      priority: a.spec.priority,
      nodeSelector: a.spec.nodeSelector,
      tolerations: a.spec.tolerations,
      ...(a.spec.affinity !== undefined ? { affinity: a.spec.affinity } : {}),
      ...(a.spec.topologySpread !== undefined ? { topologySpread: a.spec.topologySpread } : {}),
      ...(a.spec.timeoutSeconds !== undefined ? { timeoutSeconds: a.spec.timeoutSeconds } : {}),
      ...(a.spec.isolation !== undefined ? { isolation: a.spec.isolation } : {}),
      network: networkPolicyOf(a.spec.network),
      ...(a.spec.expose !== undefined ? { expose: a.spec.expose } : {}),
    },
    desiredState: a.desired,
    status: {
      phase: s.phase,
      ...(s.reason !== undefined ? { reason: s.reason } : {}),
      ...(s.message !== undefined ? { message: s.message } : {}),
      ...(s.node !== undefined ? { node: s.node } : {}),
      ...(s.containerId !== undefined ? { containerId: s.containerId } : {}),
      ...(s.gpuIds !== undefined && s.gpuIds.length > 0 ? { gpuIds: s.gpuIds } : {}),
      ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}),
      restarts: s.restarts,
      createdAt: iso(a.createdAt)!,
      ...(s.startedAt !== undefined ? { startedAt: iso(s.startedAt)! } : {}),
      ...(s.finishedAt !== undefined ? { finishedAt: iso(s.finishedAt)! } : {}),
      ...(s.nextAttemptAt !== undefined ? { nextAttemptAt: iso(s.nextAttemptAt)! } : {}),
      ...(s.isolation !== undefined ? { isolation: s.isolation } : {}),
      ...(s.endpoints !== undefined ? { endpoints: s.endpoints } : {}),
    },
    createdAt: iso(a.createdAt)!,
    updatedAt: iso(a.updatedAt)!,
    version: a.version,
  };
}

export function toEventResponse(e: PlatformEvent) {
  return {
    id: e.id,
    objectKind: e.objectKind,
    objectId: e.objectId,
    type: e.type,
    reason: e.reason,
    message: e.message,
    ...(e.data !== undefined && e.data !== null ? { data: e.data } : {}),
    time: new Date(e.time).toISOString(),
  };
}
