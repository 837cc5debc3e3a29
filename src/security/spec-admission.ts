import type { AgentSpec } from '../domain/agent.js';
import type { Principal } from '../services/agent-service.js';
import { admitNetworkPolicy } from './network-policy.js';
import type { SecretService } from './secret-service.js';

/**
 * Admission of the security fields of a new agent: a valid egress policy (`open` for platform
 * admins only: 403 otherwise) and secret references that exist in the caller's tenant (404
 * SECRET_NOT_FOUND otherwise, so a typo fails at create rather than at start).
 */
export function createSpecAdmission(secrets: SecretService): (principal: Principal, spec: AgentSpec) => Promise<AgentSpec> {
  return async (principal, spec) => {
    const network = spec.network === undefined ? undefined : admitNetworkPolicy(spec.network, principal);
    await secrets.assertExist(principal.tenantId, spec.secretEnv);
    return network === undefined ? spec : { ...spec, network };
  };
}
