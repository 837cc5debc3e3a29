import { z } from 'zod';
import type { Store } from '../../store/store.js';
import type { RuntimeRegistry } from '../../runtime/runtime-registry.js';
import type { RouteRegistry } from '../route-registry.js';
import { errorBody } from '../error-handler.js';

const Health = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });
const Ready = z
  .object({ status: z.enum(['ready', 'not ready']), checks: z.record(z.string(), z.object({ ok: z.boolean(), error: z.string().optional() })) })
  .meta({ id: 'Ready' });

export function registerHealthRoutes(routes: RouteRegistry, d: { store: Store; runtimes: RuntimeRegistry }): void {
  routes.add({ method: 'GET', url: '/health', summary: 'Liveness: the process answers', tags: ['health'], auth: false, responses: { 200: Health } }, async () => ({ status: 'ok' as const }));

  routes.add(
    { method: 'GET', url: '/ready', summary: 'Readiness: the store and at least one node runtime reachable; 503 names the failing part', tags: ['health'], auth: false, responses: { 200: Ready, 503: Ready } },
    async ({ reply, request }) => {
      const checks: Record<string, { ok: boolean; error?: string }> = {};
      const timeout = AbortSignal.timeout(3_000);
      const check = async (name: string, fn: () => Promise<void>): Promise<void> => {
        try {
          await fn();
          checks[name] = { ok: true };
        } catch (err) {
          checks[name] = { ok: false, error: err instanceof Error ? err.message : String(err) };
        }
      };
      await Promise.all([check('store', () => d.store.ping()), ...d.runtimes.all().map((r) => check(`runtime:${r.nodeId}`, () => r.ping(timeout)))]);
      const failing = Object.entries(checks).filter(([, c]) => !c.ok);
      // One dead node out of many is a node condition (NotReady), not a control plane
      // that cannot serve: readiness fails on the store, or when no node answers at all.
      const runtimeChecks = Object.entries(checks).filter(([n]) => n.startsWith('runtime:'));
      const noNodeAnswers = runtimeChecks.length > 0 && runtimeChecks.every(([, c]) => !c.ok);
      if (!checks.store?.ok || noNodeAnswers) {
        void reply.status(503);
        return {
          status: 'not ready' as const,
          checks,
          ...errorBody('NOT_READY', `not ready: ${failing.map(([n, c]) => `${n} (${c.error})`).join(', ')}`, undefined, request.id),
        };
      }
      return { status: 'ready' as const, checks };
    },
  );
}
