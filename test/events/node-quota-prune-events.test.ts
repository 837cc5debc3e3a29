/**
 * Events that need no container: node condition changes, quota, and pruning. The real
 * platform (buildPlatform, SQLite in a temp dir, scheduler, node pool with heartbeats)
 * runs on simulated nodes (a SimulatedCluster, labelled as such): losing a node is
 * `setNodeDown`, a partition the heartbeats notice exactly as they would a dead dockerd.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventsPlatform, sleep, uniqueName } from './events-platform.js';

describe.sequential('node condition and quota events (simulated nodes)', () => {
  let p: EventsPlatform;

  beforeAll(async () => {
    p = await EventsPlatform.start({
      nodes: 'simulated',
      simulatedNodes: 2,
      env: { AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '100', AGENT_PLATFORM_NODE_GRACE_MS: '600', AGENT_PLATFORM_ADMISSION_INTERVAL_MS: '200' },
    });
  });

  afterAll(async () => {
    await p?.close();
  });

  it('a node that stops answering gets NodeNotReady, and NodeReady when it answers again: listed, streamed and resumable', async () => {
    const node = 'sim-00002';
    const initial = await p.events(`?node=${node}`);
    expect(initial.map((e) => e.reason)).toEqual(['NodeReady']);
    const stream = await p.openStream(`?node=${node}`);
    const otherNode = await p.openStream('?node=sim-00001');
    try {
      const downAt = Date.now();
      p.cluster!.setNodeDown(node, true);
      const notReady = await stream.waitFor((e) => e.reason === 'NodeNotReady', 10_000);
      expect(notReady.event_).toMatchObject({ objectKind: 'Node', objectId: node, type: 'Warning' });
      // Not before the grace period, and not much after it.
      expect(notReady.receivedAt - downAt).toBeGreaterThanOrEqual(500);
      expect(notReady.receivedAt - downAt).toBeLessThan(5_000);
      expect((await p.expect(200, 'GET', `/api/v1/nodes/${node}`)).json.ready).toBe(false);

      p.cluster!.setNodeDown(node, false);
      const ready = await stream.waitFor((e) => e.reason === 'NodeReady', 10_000);
      expect(ready.event_).toMatchObject({ objectKind: 'Node', objectId: node, type: 'Normal' });
      expect(Number(ready.id)).toBeGreaterThan(Number(notReady.id));

      const listed = await p.events(`?node=${node}`);
      expect(listed.map((e) => e.reason)).toEqual(['NodeReady', 'NodeNotReady', 'NodeReady']);
      // The other node's stream saw none of it.
      await sleep(200);
      expect(otherNode.events().filter((e) => e.objectId === node)).toEqual([]);

      // Node events belong to no tenant: resuming after the first one replays the other two.
      const resumed = await p.openStream(`?node=${node}`, { 'last-event-id': String(listed[0]!.id) });
      await resumed.waitFor((e) => e.id === listed[2]!.id, 5_000);
      expect(resumed.events().map((e) => e.reason)).toEqual(['NodeNotReady', 'NodeReady']);
      await resumed.close();
      // An unfiltered admin stream resumes node events too (they are not in the admin's tenant).
      const unfiltered = await p.openStream('', { 'last-event-id': String(listed[0]!.id) });
      await unfiltered.waitFor((e) => e.id === listed[2]!.id, 5_000);
      expect(unfiltered.events().filter((e) => e.objectId === node).map((e) => e.reason)).toEqual(['NodeNotReady', 'NodeReady']);
      await unfiltered.close();
    } finally {
      await stream.close();
      await otherNode.close();
    }
  });

  it('an agent held back by quota gets a QuotaExceeded event, then Admitted when room frees up', async () => {
    const tenant = uniqueName('evq');
    await p.expect(201, 'POST', '/api/v1/tenants', { body: { id: tenant, admission: 'queue', quota: { running: 1 } } });
    const asTenant = { 'x-tenant': tenant };
    const stream = await p.openStream('', asTenant);
    try {
      const first = await p.create({ name: uniqueName('first'), image: 'sim/sleeper', command: ['sleep', '3600'] }, asTenant);
      const second = await p.create({ name: uniqueName('second'), image: 'sim/sleeper', command: ['sleep', '3600'] }, asTenant);
      expect(second.status).toMatchObject({ phase: 'Pending', reason: 'QuotaExceeded' });
      const quota = await stream.waitFor((e) => e.objectId === second.id && e.reason === 'QuotaExceeded', 5_000);
      expect(quota.event_).toMatchObject({ type: 'Warning', objectKind: 'Agent' });
      expect(quota.event_!.message.length).toBeGreaterThan(0);
      expect((await p.events(`?agent=${second.id}`, asTenant)).map((e) => e.reason)).toEqual(['Created', 'QuotaExceeded']);
      // Another tenant (the admin's own) sees none of this tenant's events.
      expect((await p.events(`?agent=${second.id}`)).length).toBe(0);

      await p.expect(200, 'POST', `/api/v1/agents/${first.id}/stop`, { headers: asTenant });
      await stream.waitFor((e) => e.objectId === second.id && e.reason === 'Admitted', 10_000);
    } finally {
      await stream.close();
    }
  });
});

describe('event pruning', () => {
  let p: EventsPlatform;

  beforeAll(async () => {
    p = await EventsPlatform.start({
      nodes: 'simulated',
      simulatedNodes: 1,
      env: { AGENT_PLATFORM_EVENT_RETENTION_MS: '3000', AGENT_PLATFORM_EVENT_PRUNE_INTERVAL_MS: '200' },
    });
  });

  afterAll(async () => {
    await p?.close();
  });

  it('deletes events older than the retention on every prune interval, and keeps younger ones', async () => {
    // One event from long ago (as after a long uptime), written through the real store.
    const old = await p.platform.store.appendEvent({ tenantId: 'default', objectKind: 'Tenant', objectId: 'default', type: 'Normal', reason: 'OldNews', message: 'ten minutes ago', time: Date.now() - 600_000 });
    const a = await p.create({ name: uniqueName('young'), image: 'sim/sleeper', command: ['sleep', '3600'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Started', 5_000);
    const createdAt = Date.now();

    // Within a few intervals the old event is gone, while the young ones are all still there.
    const deadline = Date.now() + 2_000;
    while ((await p.platform.store.listEvents({ afterId: old.id - 1, limit: 1 }))[0]?.id === old.id) {
      if (Date.now() > deadline) throw new Error('the old event was not pruned within 2 s');
      await sleep(50);
    }
    expect(Date.now() - createdAt).toBeLessThan(2_500);
    const young = await p.events(`?agent=${a.id}`);
    expect(young.map((e) => e.reason)).toEqual(expect.arrayContaining(['Created', 'Scheduled', 'Started']));
    expect((await p.events('')).some((e) => e.reason === 'OldNews')).toBe(false);

    // Once they pass the retention, they go too.
    const gone = Date.now() + 6_000;
    while ((await p.events(`?agent=${a.id}`)).length > 0) {
      if (Date.now() > gone) throw new Error('young events were not pruned after passing the retention');
      await sleep(100);
    }
    const oldestSeen = Math.min(...young.map((e) => Date.parse(e.time)));
    expect(Date.now() - oldestSeen).toBeGreaterThanOrEqual(3_000);
  }, 20_000);
});
