import { REASONS } from '../reasons.js';

/**
 * TopologySpread filter for one constraint (DoNotSchedule): placing the agent in the node's
 * domain must not push that domain more than `maxSkew` above the emptiest eligible domain.
 * `domainCount` is the number of agents of the spread group already in the node's domain,
 * `minDomainCount` the smallest such number over all eligible domains. A node without the
 * topology label (`inDomain` false) is rejected, as in Kubernetes.
 */
export function topologySpreadFilter(inDomain: boolean, domainCount: number, minDomainCount: number, maxSkew: number): string | null {
  if (!inDomain) return REASONS.topologySpread;
  return domainCount + 1 - minDomainCount > maxSkew ? REASONS.topologySpread : null;
}
