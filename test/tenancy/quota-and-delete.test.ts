import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerName } from '../../src/runtime/runtime.js';
import { SimulatedCluster } from '../../src/runtime/simulated/simulated-cluster.js';
import { TenancyPlatform, storeKinds, uid } from './tenancy-harness.js';

const kinds = await storeKinds();

describe.each(kinds)('quota limits on GPU, agents and running over HTTP (%s)', (kind) => {
  let p: TenancyPlatform;
  beforeAll(async () => {
    p = await TenancyPlatform.start(kind);
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  it('GPU total: creates over the limit are 403 QUOTA_EXCEEDED naming gpu; a stopped agent frees its GPUs', async () => {
    const t = uid('gpuq');
    await p.createTenant(t, { quota: { gpu: 2 } });
    const member = await p.createKey(t, 'member');
    const first = await p.createAgent(member.key, { name: 'g1', resources: { gpu: 1 } });
    const second = await p.createAgent(member.key, { name: 'g2', resources: { gpu: 1 } });
    expect([first.status, second.status]).toEqual([201, 201]);
    const refused = await p.createAgent(member.key, { name: 'g3', resources: { gpu: 1 } });
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('QUOTA_EXCEEDED');
    expect(refused.json.error.details).toMatchObject({ tenantId: t, resource: 'gpu', used: 2, requested: 1, limit: 2 });
    expect(refused.json.error.message).toMatch(/^quota exceeded for gpu: /);
    // Agents without GPUs are not limited by it.
    expect((await p.createAgent(member.key, { name: 'cpu-only' })).status).toBe(201);
    await p.waitPhase(member.key, first.json.id, 'Running');
    await p.expectStatus(200, 'POST', `/api/v1/agents/${first.json.id}/stop`, { token: member.key });
    await p.waitPhase(member.key, first.json.id, 'Stopped');
    expect((await p.createAgent(member.key, { name: 'g3', resources: { gpu: 1 } })).status).toBe(201);
  });

  it('agent count: records count whatever their phase; only a delete frees one', async () => {
    const t = uid('countq');
    await p.createTenant(t, { quota: { agents: 2 } });
    const member = await p.createKey(t, 'member');
    const a = await p.createAgent(member.key, { name: 'a1' });
    expect(a.status).toBe(201);
    expect((await p.createAgent(member.key, { name: 'a2' })).status).toBe(201);
    const refused = await p.createAgent(member.key, { name: 'a3' });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'QUOTA_EXCEEDED', details: { resource: 'agents', used: 2, requested: 1, limit: 2 } });
    expect(refused.json.error.message).toMatch(/^quota exceeded for agents: /);
    // A stopped agent still is a record: still refused.
    await p.waitPhase(member.key, a.json.id, 'Running');
    await p.expectStatus(200, 'POST', `/api/v1/agents/${a.json.id}/stop`, { token: member.key });
    await p.waitPhase(member.key, a.json.id, 'Stopped');
    expect((await p.createAgent(member.key, { name: 'a3' })).json.error.details.resource).toBe('agents');
    await p.expectStatus(200, 'DELETE', `/api/v1/agents/${a.json.id}`, { token: member.key });
    expect((await p.createAgent(member.key, { name: 'a3' })).status).toBe(201);
  });

  it('"running" counts admitted live agents, Pending ones included; stopping one frees it', async () => {
    const t = uid('runq');
    await p.createTenant(t, { quota: { running: 1 } });
    const member = await p.createKey(t, 'member');
    const admin = await p.createKey(t, 'tenant-admin');
    // No node matches: admitted, never scheduled, Pending for good; it holds its "running" slot.
    const pending = await p.createAgent(member.key, { name: 'stuck', nodeSelector: { 'no-such-label': 'x' } });
    expect(pending.status).toBe(201);
    // The scheduler has tried it and found no node (not merely not got to it yet), and it
    // is still Pending, holding its slot, after that.
    const failed = await p.waitFor('its FailedScheduling event', async () => {
      const events = await p.expectStatus<{ items: { reason: string; message: string }[] }>(200, 'GET', `/api/v1/agents/${pending.json.id}/events`, { token: member.key });
      return events.json.items.find((e) => e.reason === 'FailedScheduling');
    });
    expect(failed.message).toContain("didn't match node selector");
    expect(await p.phaseOf(member.key, pending.json.id)).toMatchObject({ phase: 'Pending', reason: 'Unschedulable' });
    expect((await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/quota`, { token: admin.key })).json.resources.running).toEqual({ limit: 1, used: 1, free: 0 });
    const refused = await p.createAgent(member.key, { name: 'second' });
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'QUOTA_EXCEEDED', details: { resource: 'running', used: 1, requested: 1, limit: 1 } });
    await p.expectStatus(200, 'POST', `/api/v1/agents/${pending.json.id}/stop`, { token: member.key });
    await p.waitPhase(member.key, pending.json.id, 'Stopped');
    expect((await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/quota`, { token: admin.key })).json.resources.running.used).toBe(0);
    expect((await p.createAgent(member.key, { name: 'second' })).status).toBe(201);
  });
});

describe.each(kinds)('deleting a tenant with agents over HTTP (%s)', (kind) => {
  let p: TenancyPlatform;
  beforeAll(async () => {
    p = await TenancyPlatform.start(kind);
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  it('409 TENANT_HAS_AGENTS without cascade; ?cascade=true removes agents, containers, keys and the tenant', async () => {
    const t = uid('gone');
    await p.createTenant(t);
    const member = await p.createKey(t, 'member');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await p.createAgent(member.key, { name: `d${i}` })).json.id as string);
    for (const id of ids) await p.waitPhase(member.key, id, 'Running');
    const nodes = new Map<string, string>();
    for (const id of ids) nodes.set(id, (await p.expectStatus(200, 'GET', `/api/v1/agents/${id}`, { token: member.key })).json.status.node);
    // The simulated containers exist before the delete.
    for (const id of ids) expect(await p.platform.runtimes.get(nodes.get(id)!)!.inspect(containerName(id))).toBeDefined();

    const refused = await p.expectStatus(409, 'DELETE', `/api/v1/tenants/${t}`);
    expect(refused.json.error.code).toBe('TENANT_HAS_AGENTS');
    expect(refused.json.error.message).toContain('cascade=true');
    // Nothing was touched by the refusal.
    for (const id of ids) expect((await p.phaseOf(member.key, id)).phase).toBe('Running');
    await p.expectStatus(200, 'GET', '/api/v1/whoami', { token: member.key });

    const deleted = await p.expectStatus(200, 'DELETE', `/api/v1/tenants/${t}?cascade=true`);
    expect(deleted.json).toEqual({ id: t, deleted: true });
    await p.expectStatus(404, 'GET', `/api/v1/tenants/${t}`);
    // The keys went with the tenant: the key is unknown now.
    expect((await p.expectStatus(401, 'GET', '/api/v1/whoami', { token: member.key })).json.error.code).toBe('UNAUTHENTICATED');
    for (const id of ids) {
      expect(await p.platform.store.getAgent(id)).toBeUndefined();
      expect(await p.platform.runtimes.get(nodes.get(id)!)!.inspect(containerName(id))).toBeUndefined();
    }
    expect((await p.platform.store.listAgents({ tenantId: t, limit: 10 })).items).toEqual([]);
  });
});

describe.each(kinds)('the delete wait is AGENT_PLATFORM_DELETE_WAIT_MS: 202 once it passes (%s)', (kind) => {
  const WAIT_MS = 300;
  // Nodes of our own, so one can be taken down: a delete then cannot finish (the container
  // cannot be removed) and the answer after the wait is 202 every time, not by a race.
  const cluster = new SimulatedCluster({ nodes: 1, idPrefix: 'wait-' });
  const node = 'wait-00001';
  let p: TenancyPlatform;
  beforeAll(async () => {
    p = await TenancyPlatform.start(kind, { AGENT_PLATFORM_DELETE_WAIT_MS: String(WAIT_MS) }, { runtimes: cluster.runtimes() });
  }, 60_000);
  afterAll(async () => {
    cluster.setNodeDown(node, false);
    await p?.close();
    await cluster.close();
  });

  it('DELETE /agents/{id} and a cascade tenant delete answer 202 after the configured wait; the cascade ends 200 once the agents are gone', async () => {
    const t = uid('slow');
    await p.createTenant(t);
    const member = await p.createKey(t, 'member');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await p.createAgent(member.key, { name: `w${i}` })).json.id as string);
    for (const id of ids) await p.waitPhase(member.key, id, 'Running');
    cluster.setNodeDown(node, true);

    // Timed: at least the configured wait, and far below the 15 s default.
    const timed = async (method: string, path: string, token?: string): Promise<{ res: Awaited<ReturnType<TenancyPlatform['request']>>; ms: number }> => {
      const started = Date.now();
      const res = await p.request(method, path, token === undefined ? {} : { token });
      return { res, ms: Date.now() - started };
    };
    const agentDelete = await timed('DELETE', `/api/v1/agents/${ids[0]}`, member.key);
    expect(agentDelete.res.status, agentDelete.res.text).toBe(202);
    expect(agentDelete.res.json).toMatchObject({ id: ids[0], desiredState: 'deleted' });
    expect(agentDelete.ms).toBeGreaterThanOrEqual(WAIT_MS - 20);
    expect(agentDelete.ms).toBeLessThan(5_000);

    const cascade = await timed('DELETE', `/api/v1/tenants/${t}?cascade=true`);
    expect(cascade.res.status, cascade.res.text).toBe(202);
    expect(cascade.res.json).toEqual({ id: t, deleted: false, agentsRemaining: 3 });
    expect(cascade.ms).toBeGreaterThanOrEqual(WAIT_MS - 20);
    expect(cascade.ms).toBeLessThan(5_000);
    // Not deleted yet: the tenant and its (deleting) agents are still there.
    await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}`);
    for (const id of ids) expect((await p.platform.store.getAgent(id))?.desired).toBe('deleted');

    // The node answers again: the deletes finish, and calling again deletes the tenant.
    cluster.setNodeDown(node, false);
    const done = await p.waitFor(
      'the cascade delete to finish',
      async () => {
        const r = await p.request('DELETE', `/api/v1/tenants/${t}?cascade=true`);
        if (r.status === 200) return r.json;
        expect(r.status, r.text).toBe(202);
        return undefined;
      },
      30_000,
    );
    expect(done).toEqual({ id: t, deleted: true });
    await p.expectStatus(404, 'GET', `/api/v1/tenants/${t}`);
    for (const id of ids) expect(await p.platform.store.getAgent(id)).toBeUndefined();
  }, 60_000);
});
