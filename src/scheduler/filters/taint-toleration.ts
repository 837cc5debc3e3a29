import type { Toleration } from '../../domain/agent.js';
import type { Taint } from '../../domain/node.js';
import { untoleratedTaintReason } from '../reasons.js';
import { toleratesTaint } from './tolerates-taint.js';

/** True when some toleration matches the taint. */
export function isTaintTolerated(taint: Taint, tolerations: readonly Toleration[]): boolean {
  for (const toleration of tolerations) {
    if (toleratesTaint(toleration, taint)) return true;
  }
  return false;
}

/** The first NoSchedule or NoExecute taint no toleration matches, or undefined when all are tolerated. */
export function firstUntoleratedTaint(taints: readonly Taint[], tolerations: readonly Toleration[]): Taint | undefined {
  for (const taint of taints) {
    if (taint.effect !== 'PreferNoSchedule' && !isTaintTolerated(taint, tolerations)) return taint;
  }
  return undefined;
}

/**
 * TaintToleration filter: every NoSchedule and NoExecute taint must be tolerated.
 * PreferNoSchedule taints never reject; they only lower the score. Returns the reason naming
 * the first untolerated taint, or null when the node passes.
 */
export function taintTolerationFilter(taints: readonly Taint[], tolerations: readonly Toleration[]): string | null {
  const taint = firstUntoleratedTaint(taints, tolerations);
  return taint === undefined ? null : untoleratedTaintReason(taint);
}
