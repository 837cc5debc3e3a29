import type { Toleration } from '../../domain/agent.js';
import type { Taint } from '../../domain/node.js';
import { untoleratedTaintReason } from '../reasons.js';
import { toleratesTaint } from './tolerates-taint.js';

/**
 * TaintToleration filter: every NoSchedule and NoExecute taint must be tolerated.
 * PreferNoSchedule taints never reject; they only lower the score. Returns the reason naming
 * the first untolerated taint, or null when the node passes.
 */
export function taintTolerationFilter(taints: readonly Taint[], tolerations: readonly Toleration[]): string | null {
  for (const taint of taints) {
    if (taint.effect === 'PreferNoSchedule') continue;
    let tolerated = false;
    for (const toleration of tolerations) {
      if (toleratesTaint(toleration, taint)) {
        tolerated = true;
        break;
      }
    }
    if (!tolerated) return untoleratedTaintReason(taint);
  }
  return null;
}
