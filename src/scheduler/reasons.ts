import type { Taint } from '../domain/node.js';

/**
 * Why a node was filtered out, worded like kube-scheduler's FitError so operators can
 * read one vocabulary. Each filter returns one of these strings, or null when the node passes.
 */
export const REASONS = {
  notReady: 'node(s) not ready',
  unhealthy: 'unhealthy',
  cordoned: 'cordoned',
  nodeSelector: "didn't match node selector/affinity",
  tooManyAgents: 'too many agents',
  insufficientCpu: 'insufficient cpu',
  insufficientMemory: 'insufficient memory',
  insufficientGpu: 'insufficient gpu',
  topologySpread: "didn't match topology spread constraints",
} as const;

/** The taint reason names the taint, as kube-scheduler does: `{key: value}` (value may be empty). */
export const untoleratedTaintReason = (taint: Taint): string => `had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
