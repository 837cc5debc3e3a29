import { z } from 'zod';
import type { RouteRegistry } from '../route-registry.js';

const LeaderStatus = z
  .object({
    replicaId: z.string().meta({ description: 'The replica that answered' }),
    mode: z.enum(['single', 'lease']).meta({ description: 'single: one process, always the leader; lease: replicas elect a leader through Redis' }),
    leader: z.boolean().meta({ description: 'Whether the answering replica runs the controllers now' }),
    fencingToken: z.number().int().optional().meta({ description: 'Token of the answering replica\'s term, while it leads' }),
    holder: z
      .object({ replicaId: z.string(), fencingToken: z.number().int() })
      .nullable()
      .optional()
      .meta({ description: 'Who holds the lease now (mode lease; null: nobody, an election is due)' }),
  })
  .meta({ id: 'LeaderStatus' });

export type LeaderStatusResponse = z.output<typeof LeaderStatus>;

/** GET /api/v1/leader: which replica runs the controllers. */
export function registerLeaderRoutes(routes: RouteRegistry, d: { status: (signal: AbortSignal) => Promise<LeaderStatusResponse> }): void {
  routes.add(
    { method: 'GET', url: '/api/v1/leader', summary: 'Leader election: whether this replica leads, and who does', tags: ['health'], responses: { 200: LeaderStatus } },
    async () => d.status(AbortSignal.timeout(3_000)),
  );
}
