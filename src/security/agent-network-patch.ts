import type { Agent, NetworkPolicy } from '../domain/agent.js';
import type { Clock } from '../domain/clock.js';
import { ConflictError, InputError, VersionConflictError } from '../domain/errors.js';
import type { AgentService, Principal } from '../services/agent-service.js';
import type { Store } from '../store/store.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { AgentSandbox } from './agent-sandbox.js';
import { admitNetworkPolicy, networkPolicyOf } from './network-policy.js';

/** JSON merge patch of an agent's network policy (null removes: back to `none`). */
export interface NetworkPatch {
  network?: { mode?: NetworkPolicy['mode'] | undefined; allow?: string[] | null | undefined } | null | undefined;
}

/** Applies RFC 7396 merge semantics to the network policy; the result is validated by the caller. */
export function mergeNetworkPolicy(current: NetworkPolicy, patch: NetworkPatch['network']): NetworkPolicy {
  if (patch === undefined) return current;
  if (patch === null) return { mode: 'none' };
  const mode = patch.mode ?? current.mode;
  if (mode !== 'allowlist') {
    if (patch.allow !== undefined && patch.allow !== null) throw new InputError(`network.allow: only for mode "allowlist" (the result would be mode "${mode}")`, { field: 'network.allow' });
    return { mode };
  }
  const allow = patch.allow === undefined ? (current.mode === 'allowlist' ? current.allow : []) : (patch.allow ?? []);
  return { mode, allow };
}

/** Dependencies of patchAgentNetwork. */
export interface AgentNetworkPatchDeps {
  agents: AgentService;
  store: Store;
  clock: Clock;
  events: EventRecorder;
  sandbox: AgentSandbox;
}

/**
 * PATCH /api/v1/agents/{id}: changes the allowlist of an agent. A running agent's new
 * connections use the new list at once (open tunnels keep the list they were opened with);
 * a change of mode moves the container to another network and so needs a stop first
 * (ConflictError NETWORK_MODE_CHANGE_NEEDS_STOP).
 */
export async function patchAgentNetwork(d: AgentNetworkPatchDeps, principal: Principal, id: string, patch: NetworkPatch, signal?: AbortSignal): Promise<Agent> {
  for (let attempt = 0; ; attempt++) {
    const agent = await d.agents.get(principal, id);
    const current = networkPolicyOf(agent.spec.network);
    const next = admitNetworkPolicy(mergeNetworkPolicy(current, patch.network), principal);
    const live = !['Succeeded', 'Failed', 'Stopped'].includes(agent.status.phase) && agent.status.containerId !== undefined;
    if (live && next.mode !== current.mode) {
      throw new ConflictError('NETWORK_MODE_CHANGE_NEEDS_STOP', `agent "${id}" is ${agent.status.phase}: stop it before changing network mode from "${current.mode}" to "${next.mode}"`, { agentId: id });
    }
    if (JSON.stringify(next) === JSON.stringify(current)) return agent;
    try {
      const updated = await d.store.updateAgent(id, agent.version, { spec: { ...agent.spec, network: next }, updatedAt: d.clock.now() });
      await d.sandbox.policyChanged(updated, signal);
      await d.events.record({
        tenantId: agent.tenantId,
        objectKind: 'Agent',
        objectId: id,
        type: 'Normal',
        reason: 'NetworkPolicyChanged',
        message: next.mode === 'allowlist' ? `egress allowlist set to ${next.allow.join(', ')} by ${principal.subject}` : `network mode set to ${next.mode} by ${principal.subject}`,
      });
      return updated;
    } catch (err) {
      if (err instanceof VersionConflictError && attempt < 20) continue;
      throw err;
    }
  }
}
