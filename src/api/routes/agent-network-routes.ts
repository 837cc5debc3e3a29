import { z } from 'zod';
import type { Store } from '../../store/store.js';
import type { AgentService } from '../../services/agent-service.js';
import { patchAgentNetwork, type AgentNetworkPatchDeps } from '../../security/agent-network-patch.js';
import type { RouteRegistry } from '../route-registry.js';
import { AgentResponse } from '../schemas/agent-schema.js';
import { Id, QueryInt } from '../schemas/common-schema.js';
import { EgressRecordList, PatchAgentRequest } from '../schemas/secret-schema.js';
import { toAgentResponse } from '../agent-mapper.js';

const IdParams = z.strictObject({ id: Id });
const EgressQuery = z.strictObject({
  after: QueryInt(0, Number.MAX_SAFE_INTEGER).optional().meta({ description: 'Only records with a greater id (next page: nextAfterId)' }),
  limit: QueryInt(1, 1000).optional(),
});

/** PATCH /api/v1/agents/{id} (network policy) and GET /api/v1/agents/{id}/egress (audit). */
export function registerAgentNetworkRoutes(routes: RouteRegistry, d: AgentNetworkPatchDeps & { agents: AgentService; store: Store }): void {
  routes.add(
    {
      method: 'PATCH',
      url: '/api/v1/agents/:id',
      summary: 'Change an agent (JSON merge patch): today its egress allowlist, which a running agent uses for new connections',
      tags: ['agents'],
      permission: 'agents:write',
      params: IdParams,
      body: PatchAgentRequest,
      responses: { 200: AgentResponse },
    },
    async ({ params, body, principal }) => toAgentResponse(await patchAgentNetwork(d, principal, params.id, body)),
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/agents/:id/egress',
      summary: 'Egress audit of an agent: every connection attempt through the proxy (destination, decision, bytes), oldest first',
      tags: ['agents'],
      permission: 'agents:read',
      params: IdParams,
      query: EgressQuery,
      responses: { 200: EgressRecordList },
    },
    async ({ params, query, principal }) => {
      const agent = await d.agents.get(principal, params.id);
      const limit = query.limit ?? 100;
      const records = await d.store.listEgressAudit({ agentId: agent.id, tenantId: agent.tenantId, afterId: query.after, limit });
      const items = records.map(({ agentId: _a, tenantId: _t, ...r }) => ({ ...r, time: new Date(r.time).toISOString() }));
      return { items, ...(records.length === limit ? { nextAfterId: records[records.length - 1]!.id } : {}) };
    },
  );
}
