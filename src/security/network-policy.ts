import type { NetworkPolicy } from '../domain/agent.js';
import { ForbiddenError, InputError } from '../domain/errors.js';
import { compileAllowlist, type Allowlist } from '../egress/allowlist.js';

/** Who may ask for which network mode; today only platform admins may have `open`. */
export interface NetworkRequester {
  role: string;
}

/** The policy of an agent, with absent meaning `none`. */
export const networkPolicyOf = (policy: NetworkPolicy | undefined): NetworkPolicy => policy ?? { mode: 'none' };

/**
 * Validates a requested egress policy and returns it normalised (rules trimmed, duplicates
 * dropped, order kept). Throws InputError(INVALID_EGRESS_RULE) naming the bad rule, and
 * ForbiddenError(NETWORK_OPEN_FORBIDDEN) when a non-admin asks for `open`: unrestricted
 * egress lets an agent reach anything the node can, including other tenants' services.
 */
export function admitNetworkPolicy(policy: NetworkPolicy | undefined, requester: NetworkRequester): NetworkPolicy {
  const p = networkPolicyOf(policy);
  if (p.mode === 'open' && requester.role !== 'platform-admin') {
    throw new ForbiddenError('network mode "open" is only for platform admins; use {"mode": "allowlist", "allow": [...]}', { field: 'network.mode' }, 'NETWORK_OPEN_FORBIDDEN');
  }
  if (p.mode !== 'allowlist') return { mode: p.mode };
  const allow = [...new Set(p.allow.map((r) => r.trim()))];
  if (allow.length === 0) throw new InputError('network.allow: an allowlist needs at least one rule (or use {"mode": "none"})', { field: 'network.allow' });
  compileAllowlist(allow);
  return { mode: 'allowlist', allow };
}

/** The compiled allowlist of an allowlist policy (undefined for other modes). */
export const allowlistOf = (policy: NetworkPolicy | undefined): Allowlist | undefined =>
  policy?.mode === 'allowlist' ? compileAllowlist(policy.allow) : undefined;
