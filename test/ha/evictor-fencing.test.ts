import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { EventRecorder } from '../../src/controllers/event-recorder.js';
import { systemClock } from '../../src/domain/clock.js';
import { silentLogger } from '../../src/domain/logger.js';
import { NodeEvictor } from '../../src/nodes/node-evictor.js';
import { RuntimeRegistry } from '../../src/runtime/runtime-registry.js';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { createScratchDatabase } from '../crash/scratch-database.js';
import { PG_URL, storeKinds } from '../tenancy/tenancy-harness.js';

/**
 * The node evictor's node-lost pass writes with the fencing token of the term it runs in:
 * a replica deposed mid-pass (a newer leader recorded its token) cannot mark agents lost
 * from its stale view; it stops the pass and steps down.
 */

const kinds = await storeKinds();

describe.each(kinds)('node evictor fencing on %s', (kind) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => console.warn('cleanup failed', err));
  });

  async function freshStore(): Promise<Store> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ap-evictor-fencing-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    let url = '';
    if (kind === 'postgres') {
      const db = await createScratchDatabase(PG_URL);
      cleanups.push(() => db.drop());
      url = db.url;
    }
    const store = await openStore(url, dataDir);
    cleanups.push(() => store.close());
    return store;
  }

  async function runningOn(store: Store, node: string, n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const now = Date.now();
      const { agent } = await store.createAgent({
        id: randomUUID(),
        tenantId: 'default',
        name: `on-${node}-${i}`,
        labels: {},
        spec: { image: 'sim/sleep', command: ['sleep', 'infinity'], args: [], env: {}, nodeSelector: {}, tolerations: [], resources: { cpuMillicores: 10, memoryMiB: 16, gpu: 0, cpuLimitMillicores: 10, memoryLimitMiB: 16 }, restartPolicy: 'Always', schedulingPolicy: 'spread', priority: 0 },
        desired: 'running',
        status: { phase: 'Running', node, restarts: 0, phaseSince: now },
        createdAt: now,
      });
      ids.push(agent.id);
    }
    return ids;
  }

  function evictorOn(store: Store): NodeEvictor {
    const bus = new MemoryBus();
    return new NodeEvictor({ store, bus, clock: systemClock, logger: silentLogger, events: new EventRecorder(store, bus, systemClock), runtimes: new RuntimeRegistry(), release: () => undefined, stopGraceMs: 1_000, leaderElection: true });
  }

  it('a pass of a deposed leader writes nothing, stops, and steps down; the current leader\'s pass moves the agents', async () => {
    const store = await freshStore();
    const ids = await runningOn(store, 'n1', 3);
    const stale = evictorOn(store);
    const phases = async (): Promise<string[]> => Promise.all(ids.map(async (id) => (await store.getAgent(id))!.status.phase));

    // Outside a term: nothing happens.
    expect(await stale.nodeLost('n1')).toEqual({ rescheduled: 0, failed: 0, stopped: 0 });

    // It led with token 1 and still believes so; a newer leader has recorded 2 since.
    expect(await store.recordFencingToken(1)).toBe(1);
    const staleTerm = new AbortController();
    const stepDowns: string[] = [];
    stale.lead(staleTerm.signal, { fencingToken: 1, stepDown: (reason) => stepDowns.push(reason) });
    expect(await store.recordFencingToken(2)).toBe(2);

    expect(await stale.nodeLost('n1')).toEqual({ rescheduled: 0, failed: 0, stopped: 0 });
    expect(stepDowns).toHaveLength(1);
    expect(stepDowns[0]).toMatch(/newer leader recorded fencing token 2/);
    expect(await phases()).toEqual(['Running', 'Running', 'Running']);
    for (const id of ids) expect((await store.listEvents({ objectId: id })).map((e) => e.reason)).not.toContain('NodeLost');

    // The current leader's evictor, in its term (token 2), moves them.
    const current = evictorOn(store);
    const term = new AbortController();
    current.lead(term.signal, { fencingToken: 2, stepDown: () => term.abort() });
    expect(await current.nodeLost('n1')).toEqual({ rescheduled: 3, failed: 0, stopped: 0 });
    expect(await phases()).toEqual(['Pending', 'Pending', 'Pending']);
    for (const id of ids) expect((await store.getAgent(id))!.status).toMatchObject({ reason: 'NodeLost' });

    // Once its term ended it does nothing any more.
    const more = await runningOn(store, 'n2', 1);
    term.abort();
    expect(await current.nodeLost('n2')).toEqual({ rescheduled: 0, failed: 0, stopped: 0 });
    expect((await store.getAgent(more[0]!))!.status.phase).toBe('Running');
  }, 60_000);
});
