import { scanPages } from '../../store/scan-pages.js';
import type { Phase } from '../../domain/agent.js';
import { ForbiddenError } from '../../domain/errors.js';
import type { NodeAllocation } from '../../domain/node.js';
import type { NodeUsage } from '../../metrics/usage-sampler.js';
import type { Principal } from '../../services/agent-service.js';
import type { Store } from '../../store/store.js';
import type { NodePoolService } from '../../nodes/node-pool-service.js';
import { toNodeResponse } from '../../nodes/node-mapper.js';
import type { RouteRegistry } from '../route-registry.js';
import { DrainResponse, NodeDetail, NodeIdParams, NodeList, NodeResponse } from '../schemas/node-schema.js';

export interface NodeRouteDeps {
  nodes: NodePoolService;
  /** What is counted on a node (SchedulerPlacer.allocationOf). */
  allocationOf: (nodeId: string) => NodeAllocation;
  store: Store;
  /**
   * Measured usage of a node's running agents, all tenants' or only `tenantId`'s
   * (UsageSampler.nodeUsage); absent: nodes never show `usage`.
   */
  usage?: ((nodeId: string, tenantId?: string) => NodeUsage | undefined) | undefined;
}

function requirePlatformAdmin(principal: Principal, action: string): void {
  if (principal.role !== 'platform-admin') {
    throw new ForbiddenError(`${action} needs the platform-admin role; you are ${principal.role}`, { role: principal.role });
  }
}

/**
 * Which agents a caller sees on a node, in agentList and in measured usage alike: all for
 * platform admins, else only the caller's tenant's. Allocation stays node-wide for everyone
 * (it is what the scheduler packs against), but usage per agent would tell one tenant what
 * another's agents do on a shared node, so it is summed over the caller's own agents only.
 */
const seesAllTenants = (principal: Principal): boolean => principal.role === 'platform-admin';

/** Nodes: list, describe, cordon, uncordon, drain. Reads are open to every role; changes need platform-admin. */
export function registerNodeRoutes(routes: RouteRegistry, d: NodeRouteDeps): void {
  const view = (id: string) => toNodeResponse(d.nodes.node(id), d.nodes.condition(id), d.nodes.info(id), d.allocationOf(id));
  /** A node with the measured usage the caller may see; simulated nodes have no containers to measure. */
  const viewFor = (id: string, principal: Principal) => {
    const node = view(id);
    const usage = node.simulated ? undefined : d.usage?.(id, seesAllTenants(principal) ? undefined : principal.tenantId);
    return usage ? { ...node, usage: { ...usage, sampledAt: new Date(usage.sampledAt).toISOString() } } : node;
  };

  routes.add(
    { method: 'GET', url: '/api/v1/nodes', summary: 'List nodes: capacity, allocation, conditions, measured usage', tags: ['nodes'], permission: 'nodes:read', responses: { 200: NodeList } },
    async ({ principal }) => ({ items: d.nodes.nodes().map((n) => viewFor(n.id, principal)) }),
  );

  routes.add(
    {
      method: 'GET',
      url: '/api/v1/nodes/:id',
      summary: "Get a node, its measured usage and the live agents on it (other tenants' agents, and their usage, only for platform admins)",
      tags: ['nodes'],
      permission: 'nodes:read',
      params: NodeIdParams,
      responses: { 200: NodeDetail },
    },
    async ({ params, principal }) => {
      const node = viewFor(params.id, principal);
      const agentList: { id: string; tenantId: string; name: string; phase: Phase }[] = [];
      const visible = (tenantId: string): boolean => seesAllTenants(principal) || tenantId === principal.tenantId;
      const pages = scanPages((afterId) => d.store.scanAgents({ node: params.id, phase: ['Pending', 'Starting', 'Running', 'Stopping', 'Deleting'], limit: 1000, afterId }));
      for await (const items of pages) {
        for (const a of items) if (visible(a.tenantId)) agentList.push({ id: a.id, tenantId: a.tenantId, name: a.name, phase: a.status.phase });
      }
      return { ...node, agentList };
    },
  );

  for (const action of ['cordon', 'uncordon'] as const) {
    routes.add(
      {
        method: 'POST',
        url: `/api/v1/nodes/:id/${action}`,
        summary: action === 'cordon' ? 'Cordon a node: no new agents; running ones stay' : 'Uncordon a node: schedulable again (also clears the unhealthy mark)',
        tags: ['nodes'],
        params: NodeIdParams,
        responses: { 200: NodeResponse },
      },
      async ({ params, principal }) => {
        requirePlatformAdmin(principal, `${action} node`);
        if (action === 'cordon') await d.nodes.cordon(params.id, principal.subject);
        else await d.nodes.uncordon(params.id, principal.subject);
        return view(params.id);
      },
    );
  }

  routes.add(
    {
      method: 'POST',
      url: '/api/v1/nodes/:id/drain',
      summary: 'Drain a node: cordon it and move its restartable agents (OnFailure, Always) elsewhere; Never agents run to completion',
      tags: ['nodes'],
      params: NodeIdParams,
      responses: { 202: DrainResponse },
    },
    async ({ params, principal, reply }) => {
      requirePlatformAdmin(principal, 'drain node');
      const result = await d.nodes.drain(params.id, principal.subject, routes.closing);
      void reply.status(202);
      return { node: params.id, cordoned: true as const, ...result };
    },
  );
}
