import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/open-store.js';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireGvisor, SecurityPlatform, sleep, uniqueName, type AgentJson } from './security-harness.js';

// Both gates fail (not skip) under CI=true when Docker or runsc is missing.
const hasDocker = await requireDocker();
const hasGvisor = hasDocker && (await requireGvisor());

interface TenantJson {
  id: string;
  minIsolation: 'runc' | 'gvisor' | null;
}

interface ErrorJson {
  error: { code: string; message: string };
}

/** A member API key of `tenantId` (created by the platform admin). */
async function memberKey(p: SecurityPlatform, tenantId: string, role = 'member'): Promise<string> {
  const res = await p.request<{ key: string }>('POST', `/api/v1/tenants/${tenantId}/keys`, { name: `${role}-key`, role });
  expect(res.status, res.text).toBe(201);
  return res.json.key;
}

/** Polls the agent as its owner (the harness polls with the admin token, which sees only its own tenant). */
async function waitPhase(p: SecurityPlatform, token: string, id: string, phase: string): Promise<AgentJson> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const res = await p.request<AgentJson>('GET', `/api/v1/agents/${id}`, undefined, token);
    expect(res.status, res.text).toBe(200);
    const agent = res.json;
    if (agent.status.phase === phase && (phase !== 'Running' || agent.status.containerId !== undefined)) return agent;
    if (agent.status.phase === 'Failed' || Date.now() > deadline) throw new Error(`agent ${id} did not reach ${phase}: ${JSON.stringify(agent.status)}`);
    await sleep(200);
  }
}

/** The OCI runtime Docker reports for an agent's container. */
async function runtimeOf(p: SecurityPlatform, agent: AgentJson): Promise<string> {
  const info = await p.docker.getContainer(agent.status.containerId!).inspect();
  return info.HostConfig.Runtime ?? '';
}

/** Runs a sleeping busybox agent asking for runc; returns it Running with the container's OCI runtime. */
async function runRuncAgent(p: SecurityPlatform, token: string, busybox: string): Promise<{ agent: AgentJson; runtime: string }> {
  const created = await p.create({ name: uniqueName('iso'), image: busybox, isolation: 'runc', command: ['sh', '-c', 'sleep 3600'] }, token);
  expect(created.spec.isolation).toBe('runc');
  const agent = await waitPhase(p, token, created.id, 'Running');
  return { agent, runtime: await runtimeOf(p, agent) };
}

describe.skipIf(!hasGvisor)('tenant minimum isolation class', () => {
  let p: SecurityPlatform;
  let busybox: string;
  let strictToken: string;
  let laxToken: string;

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
    p = await SecurityPlatform.start();
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 120_000);

  it('is set by the platform admin on create and shown on GET; members and tenant admins cannot change it', async () => {
    const strict = await p.request<TenantJson>('POST', '/api/v1/tenants', { id: 'strict', minIsolation: 'gvisor' });
    expect(strict.status, strict.text).toBe(201);
    expect(strict.json.minIsolation).toBe('gvisor');
    const lax = await p.request<TenantJson>('POST', '/api/v1/tenants', { id: 'lax' });
    expect(lax.status, lax.text).toBe(201);
    expect(lax.json.minIsolation).toBeNull();
    expect((await p.request<TenantJson>('GET', '/api/v1/tenants/strict')).json.minIsolation).toBe('gvisor');
    const listed = await p.request<{ items: TenantJson[] }>('GET', '/api/v1/tenants');
    expect(Object.fromEntries(listed.json.items.map((t) => [t.id, t.minIsolation]))).toMatchObject({ strict: 'gvisor', lax: null, default: null });
    // Persisted, not cached: a second connection to the same database sees it.
    const reader = await openStore(p.config.databaseUrl, p.config.dataDir, { migrate: false });
    try {
      expect((await reader.getTenant('strict'))?.minIsolation).toBe('gvisor');
      expect((await reader.getTenant('lax'))?.minIsolation).toBeUndefined();
    } finally {
      await reader.close();
    }

    expect((await p.request<ErrorJson>('POST', '/api/v1/tenants', { id: 'bad-iso', minIsolation: 'kata' })).status).toBe(400);
    strictToken = await memberKey(p, 'strict');
    laxToken = await memberKey(p, 'lax');
    const tenantAdmin = await memberKey(p, 'strict', 'tenant-admin');
    // The tenant's own keys cannot lower their floor.
    for (const token of [strictToken, tenantAdmin]) {
      const res = await p.request<ErrorJson>('PATCH', '/api/v1/tenants/strict', { minIsolation: null }, token);
      expect(res.status, res.text).toBe(403);
    }
    const viewed = await p.request<TenantJson>('GET', '/api/v1/tenants/strict', undefined, strictToken);
    expect(viewed.status, viewed.text).toBe(200);
    expect(viewed.json.minIsolation).toBe('gvisor');
  });

  it("raises a runc request of the tenant's agents to gvisor (status.isolation and the container's runtime say so); other tenants keep runc", async () => {
    const strict = await runRuncAgent(p, strictToken, busybox);
    expect(strict.agent.status.isolation).toBe('gvisor');
    expect(strict.runtime).toBe('runsc');
    const lax = await runRuncAgent(p, laxToken, busybox);
    expect(lax.agent.status.isolation).toBe('runc');
    expect(lax.runtime).toBe('runc');
  }, 240_000);

  it('applies a PATCH to the next container without a restart; null removes the minimum', async () => {
    const raised = await p.request<TenantJson>('PATCH', '/api/v1/tenants/lax', { minIsolation: 'gvisor' });
    expect(raised.status, raised.text).toBe(200);
    expect(raised.json.minIsolation).toBe('gvisor');
    const lax = await runRuncAgent(p, laxToken, busybox);
    expect(lax.agent.status.isolation).toBe('gvisor');
    expect(lax.runtime).toBe('runsc');

    const cleared = await p.request<TenantJson>('PATCH', '/api/v1/tenants/strict', { minIsolation: null });
    expect(cleared.status, cleared.text).toBe(200);
    expect(cleared.json.minIsolation).toBeNull();
    // A PATCH of other fields leaves the minimum alone.
    expect((await p.request<TenantJson>('PATCH', '/api/v1/tenants/lax', { name: 'Lax Inc' })).json.minIsolation).toBe('gvisor');
    const strict = await runRuncAgent(p, strictToken, busybox);
    expect(strict.agent.status.isolation).toBe('runc');
    expect(strict.runtime).toBe('runc');

    // Raised again while that agent exists: a stop and start reuses its runc container, and
    // status.isolation must report the class the container really has, not the new floor.
    expect((await p.request<TenantJson>('PATCH', '/api/v1/tenants/strict', { minIsolation: 'gvisor' })).json.minIsolation).toBe('gvisor');
    const id = strict.agent.id;
    expect((await p.request('POST', `/api/v1/agents/${id}/stop`, undefined, strictToken)).status).toBe(200);
    await waitPhase(p, strictToken, id, 'Stopped');
    expect((await p.request('POST', `/api/v1/agents/${id}/start`, undefined, strictToken)).status).toBe(200);
    const again = await waitPhase(p, strictToken, id, 'Running');
    const runtime = await runtimeOf(p, again);
    expect(again.status.isolation).toBe(runtime === 'runsc' ? 'gvisor' : 'runc');
    if (again.status.containerId === strict.agent.status.containerId) expect(runtime).toBe('runc');
  }, 240_000);
});

describe.skipIf(!hasGvisor)('tenant minimum under a platform minimum', () => {
  let p: SecurityPlatform;

  beforeAll(async () => {
    p = await SecurityPlatform.start({ env: { AGENT_PLATFORM_MIN_ISOLATION: 'gvisor' } });
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 120_000);

  it('takes the stronger of the two: a tenant minimum of runc does not lower the platform gvisor', async () => {
    const busybox = await ensureBusyboxImage();
    const tenant = await p.request<TenantJson>('POST', '/api/v1/tenants', { id: 'weak', minIsolation: 'runc' });
    expect(tenant.status, tenant.text).toBe(201);
    expect(tenant.json.minIsolation).toBe('runc');
    const { agent, runtime } = await runRuncAgent(p, await memberKey(p, 'weak'), busybox);
    expect(agent.status.isolation).toBe('gvisor');
    expect(runtime).toBe('runsc');
  }, 180_000);
});
