import type { Node } from '../domain/node.js';
import type { CandidateScore, ScheduleDecision, ScoreBreakdown } from './decision.js';
import { fitFilter } from './filters/fit.js';
import { compareGpuIds, gpuFilter, pickGpuIds } from './filters/gpu.js';
import { compileNodeSelector, nodeAffinityFilter } from './filters/node-affinity.js';
import { nodeReadyFilter } from './filters/node-ready.js';
import { nodeUnschedulableFilter } from './filters/node-unschedulable.js';
import { taintTolerationFilter } from './filters/taint-toleration.js';
import { topologySpreadFilter } from './filters/topology-spread.js';
import type { CompiledSchedulerConfig } from './scheduler-config.js';
import type { SchedulingRequest, SchedulingSnapshot } from './scheduling-snapshot.js';
import { balancedAllocationScore } from './scorers/balanced-allocation.js';
import { leastAllocatedScore } from './scorers/least-allocated.js';
import { mostAllocatedScore } from './scorers/most-allocated.js';
import { nodeAffinityRawScore, normalizeNodeAffinityScore } from './scorers/node-affinity-score.js';
import { intolerablePreferNoScheduleCount, normalizeTaintTolerationScore } from './scorers/taint-toleration-score.js';
import { unschedulableMessage } from './unschedulable-message.js';

/**
 * The straightforward scheduler: run every filter on every Node object, score every feasible
 * node, sort them all. Same plugins and semantics as Scheduler with sampling off, none of its
 * precomputation. It is the baseline of bench/scheduler.ts and a cross-check in tests; use
 * Scheduler in production.
 */
export function naiveSchedule(request: SchedulingRequest, snapshot: SchedulingSnapshot, config: CompiledSchedulerConfig): ScheduleDecision {
  const spec = request.spec;
  const weights = config.policyWeights[spec.schedulingPolicy];
  const selector = compileNodeSelector(spec.nodeSelector ?? {}, spec.affinity?.required);
  const tolerations = spec.tolerations ?? [];
  const preferred = spec.affinity?.preferred ?? [];
  const groupCounts = snapshot.agentCountsByNode?.[request.spreadGroup ?? ''] ?? {};

  // Topology spread: per constraint, agents per domain and the emptiest eligible domain.
  const spreads = (spec.topologySpread ?? []).map((constraint) => {
    const perDomain = new Map<string, number>();
    // Eligible domains: values held by at least one node that passes the selector.
    for (const node of snapshot.nodes) {
      const value = node.labels[constraint.topologyKey];
      if (value !== undefined && nodeAffinityFilter(node.labels, selector) === null) perDomain.set(value, 0);
    }
    for (const node of snapshot.nodes) {
      const value = node.labels[constraint.topologyKey];
      const count = value === undefined ? undefined : perDomain.get(value);
      if (count !== undefined) perDomain.set(value!, count + (groupCounts[node.id] ?? 0));
    }
    let minCount = perDomain.size === 0 ? 0 : Number.POSITIVE_INFINITY;
    for (const count of perDomain.values()) minCount = Math.min(minCount, count);
    return { constraint, perDomain, minCount };
  });

  const reasons = new Map<string, number>();
  const feasible: { node: Node; resource: ScoreBreakdown; affinityRaw: number; taintCount: number }[] = [];
  for (const node of snapshot.nodes) {
    const allocatableCpu = Math.max(0, node.capacity.cpuMillicores - node.reserved.cpuMillicores);
    const allocatableMemory = Math.max(0, node.capacity.memoryMiB - node.reserved.memoryMiB);
    let reason =
      nodeReadyFilter(node) ??
      nodeUnschedulableFilter(node) ??
      taintTolerationFilter(node.taints, tolerations) ??
      nodeAffinityFilter(node.labels, selector) ??
      fitFilter(
        allocatableCpu - node.allocated.cpuMillicores,
        allocatableMemory - node.allocated.memoryMiB,
        node.capacity.maxAgents - node.allocated.agents,
        spec.resources,
      ) ??
      (spec.resources.gpu > 0 ? gpuFilter(node.capacity.gpus.filter((gpu) => !node.allocated.gpuIds.includes(gpu.id)).length, spec.resources.gpu) : null);
    for (const { constraint, perDomain, minCount } of spreads) {
      if (reason !== null) break;
      const value = node.labels[constraint.topologyKey];
      reason = topologySpreadFilter(value !== undefined, value === undefined ? 0 : perDomain.get(value) ?? 0, minCount, constraint.maxSkew);
    }
    if (reason !== null) {
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      continue;
    }
    const requestedCpu = node.allocated.cpuMillicores + spec.resources.cpuMillicores;
    const requestedMemory = node.allocated.memoryMiB + spec.resources.memoryMiB;
    const resource: ScoreBreakdown = {};
    if (weights.LeastAllocated > 0) resource.LeastAllocated = leastAllocatedScore(requestedCpu, allocatableCpu, requestedMemory, allocatableMemory);
    if (weights.MostAllocated > 0) resource.MostAllocated = mostAllocatedScore(requestedCpu, allocatableCpu, requestedMemory, allocatableMemory);
    if (weights.BalancedAllocation > 0) resource.BalancedAllocation = balancedAllocationScore(requestedCpu, allocatableCpu, requestedMemory, allocatableMemory);
    feasible.push({
      node,
      resource,
      affinityRaw: nodeAffinityRawScore(node.labels, preferred),
      taintCount: intolerablePreferNoScheduleCount(node.taints, tolerations),
    });
  }
  if (feasible.length === 0) {
    const { message, reasons: sorted } = unschedulableMessage(snapshot.nodes.length, reasons);
    return { unschedulable: true, message, reasons: sorted, examinedNodes: snapshot.nodes.length };
  }

  const maxAffinity = feasible.reduce((max, c) => Math.max(max, c.affinityRaw), 0);
  const maxTaints = feasible.reduce((max, c) => Math.max(max, c.taintCount), 0);
  const candidates: CandidateScore[] = feasible.map((c) => {
    const breakdown: ScoreBreakdown = { ...c.resource };
    if (config.nodeAffinityWeight > 0) breakdown.NodeAffinity = normalizeNodeAffinityScore(c.affinityRaw, maxAffinity);
    if (config.taintTolerationWeight > 0) breakdown.TaintToleration = normalizeTaintTolerationScore(c.taintCount, maxTaints);
    let score = 0;
    if (breakdown.LeastAllocated !== undefined) score += weights.LeastAllocated * breakdown.LeastAllocated;
    if (breakdown.MostAllocated !== undefined) score += weights.MostAllocated * breakdown.MostAllocated;
    if (breakdown.BalancedAllocation !== undefined) score += weights.BalancedAllocation * breakdown.BalancedAllocation;
    if (breakdown.NodeAffinity !== undefined) score += config.nodeAffinityWeight * breakdown.NodeAffinity;
    if (breakdown.TaintToleration !== undefined) score += config.taintTolerationWeight * breakdown.TaintToleration;
    return { nodeId: c.node.id, score, breakdown };
  });
  candidates.sort((a, b) => b.score - a.score || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const best = feasible.find((c) => c.node.id === candidates[0]!.nodeId)!.node;
  const sortedGpuIds = best.capacity.gpus.map((gpu) => gpu.id).sort(compareGpuIds);
  const weightsUsed: ScoreBreakdown = {};
  if (weights.LeastAllocated > 0) weightsUsed.LeastAllocated = weights.LeastAllocated;
  if (weights.MostAllocated > 0) weightsUsed.MostAllocated = weights.MostAllocated;
  if (weights.BalancedAllocation > 0) weightsUsed.BalancedAllocation = weights.BalancedAllocation;
  if (config.nodeAffinityWeight > 0) weightsUsed.NodeAffinity = config.nodeAffinityWeight;
  if (config.taintTolerationWeight > 0) weightsUsed.TaintToleration = config.taintTolerationWeight;
  return {
    unschedulable: false,
    nodeId: best.id,
    gpuIds: spec.resources.gpu > 0 ? pickGpuIds(sortedGpuIds, new Set(best.allocated.gpuIds), spec.resources.gpu) : [],
    scores: candidates.slice(0, config.topCandidates),
    weights: weightsUsed,
    sampled: false,
    examinedNodes: snapshot.nodes.length,
    feasibleNodes: feasible.length,
  };
}
