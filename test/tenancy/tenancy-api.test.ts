import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES, hasPermission, type Permission } from '../../src/tenancy/roles.js';
import { TenancyPlatform, storeKinds, uid } from './tenancy-harness.js';

const kinds = await storeKinds();

describe.each(kinds)('tenancy over HTTP (%s)', (kind) => {
  let p: TenancyPlatform;
  beforeAll(async () => {
    p = await TenancyPlatform.start(kind);
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  it('bootstrap admin is platform-admin of "default"; tenant CRUD; default is protected', async () => {
    expect((await p.expectStatus(200, 'GET', '/api/v1/whoami')).json).toEqual({ subject: 'admin', tenantId: 'default', role: 'platform-admin' });
    const id = uid('crud');
    await p.createTenant(id, { name: 'Team Crud', quota: { cpu: '2', memory: '4Gi', perAgent: { gpu: 1 } } });
    expect((await p.expectStatus(409, 'POST', '/api/v1/tenants', { body: { id } })).json.error.code).toBe('TENANT_EXISTS');
    const got = (await p.expectStatus(200, 'GET', `/api/v1/tenants/${id}`)).json;
    expect(got.quota).toMatchObject({ cpuMillicores: 2000, memoryMiB: 4096, maxAgentGpu: 1, gpu: null });
    const patched = (await p.expectStatus(200, 'PATCH', `/api/v1/tenants/${id}`, { body: { admission: 'queue', quota: { cpu: null, agents: 5 } } })).json;
    expect(patched).toMatchObject({ admission: 'queue', quota: { cpuMillicores: null, memoryMiB: 4096, agents: 5 } });
    expect((await p.expectStatus(200, 'GET', '/api/v1/tenants')).json.items.map((t: { id: string }) => t.id)).toEqual(expect.arrayContaining(['default', id]));
    expect((await p.expectStatus(409, 'DELETE', '/api/v1/tenants/default')).json.error.code).toBe('TENANT_PROTECTED');
    await p.expectStatus(200, 'DELETE', `/api/v1/tenants/${id}`);
    await p.expectStatus(404, 'GET', `/api/v1/tenants/${id}`);
  });

  it('key lifecycle: shown once, hashed, listed without secret, revoked or expired -> 401 at once', async () => {
    const t = uid('keys');
    await p.createTenant(t);
    const created = await p.expectStatus(201, 'POST', `/api/v1/tenants/${t}/keys`, { body: { name: 'ci', role: 'member' } });
    expect(created.json.key).toMatch(/^ap_[a-z2-7]{16}_[0-9a-f]{64}$/);
    expect(created.headers.get('cache-control')).toBe('no-store');
    const key = created.json.key as string;
    const keyId = created.json.id as string;
    expect((await p.expectStatus(200, 'GET', '/api/v1/whoami', { token: key })).json).toEqual({ subject: `key:${keyId}`, tenantId: t, role: 'member' });
    const list = await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/keys`);
    expect(list.text).not.toContain(key.split('_')[2]);
    expect(list.json.items).toEqual([expect.objectContaining({ id: keyId, name: 'ci', role: 'member', status: 'active' })]);
    // Stored hashed: the database never holds the secret.
    const stored = await p.platform.store.getApiKey(keyId);
    expect(stored?.secretSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(key.split('_')[2]);
    // A wrong secret for a real key id is 401.
    await p.expectStatus(401, 'GET', '/api/v1/whoami', { token: `${key.slice(0, -4)}0000` });

    await p.expectStatus(200, 'DELETE', `/api/v1/tenants/${t}/keys/${keyId}`);
    const revoked = await p.expectStatus(401, 'GET', '/api/v1/whoami', { token: key });
    expect(revoked.json.error.code).toBe('API_KEY_REVOKED');
    expect((await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/keys`)).json.items[0].status).toBe('revoked');

    const soon = await p.createKey(t, 'viewer', { expiresAt: new Date(Date.now() + 1200).toISOString() });
    await p.expectStatus(200, 'GET', '/api/v1/whoami', { token: soon.key });
    await new Promise((r) => setTimeout(r, 1300));
    expect((await p.expectStatus(401, 'GET', '/api/v1/whoami', { token: soon.key })).json.error.code).toBe('API_KEY_EXPIRED');
    await p.expectStatus(422, 'POST', `/api/v1/tenants/${t}/keys`, { body: { name: 'past', expiresAt: new Date(Date.now() - 1000).toISOString() } });

    // A tenant admin grants up to its own role, never platform-admin; a member grants nothing.
    const admin = await p.createKey(t, 'tenant-admin');
    await p.expectStatus(201, 'POST', `/api/v1/tenants/${t}/keys`, { token: admin.key, body: { name: 'm', role: 'member' } });
    await p.expectStatus(403, 'POST', `/api/v1/tenants/${t}/keys`, { token: admin.key, body: { name: 'x', role: 'platform-admin' } });
    const member = await p.createKey(t, 'member');
    const refused = await p.expectStatus(403, 'POST', `/api/v1/tenants/${t}/keys`, { token: member.key, body: { name: 'x', role: 'viewer' } });
    expect(refused.json.error.message).toBe('missing permission keys:write (role member)');

    // Deleting the tenant (cascade) revokes its keys at once.
    await p.expectStatus(200, 'DELETE', `/api/v1/tenants/${t}?cascade=true`);
    await p.expectStatus(401, 'GET', '/api/v1/whoami', { token: admin.key });
  });

  it('every authenticated route in /openapi.json checks its permission for every role', async () => {
    const t = uid('roles');
    await p.createTenant(t);
    const tokens: Record<string, string> = { 'platform-admin': p.adminToken };
    for (const role of ROLES.filter((r) => r !== 'platform-admin')) tokens[role] = (await p.createKey(t, role)).key;
    const doc = (await p.expectStatus(200, 'GET', '/openapi.json', { token: null })).json as { paths: Record<string, Record<string, { security?: unknown[]; 'x-permission'?: Permission }>> };
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (op.security && op.security.length === 0) continue;
        const permission = op['x-permission'];
        expect(permission, `${method} ${path} has no permission`).toBeDefined();
        // Dummy ids: permission is checked before anything looks at them.
        const url = path.replace('{keyId}', 'zzzzzzzzzzzzzzzz').replace(/\{[^}]+\}/g, 'zzzzzzzzzzzzzzzzzzzz');
        for (const role of ROLES) {
          const abort = new AbortController();
          const headersOnly = path.endsWith('/stream');
          const res = await fetch(p.baseUrl + url, {
            method: method.toUpperCase(),
            headers: { authorization: `Bearer ${tokens[role]}`, ...(['post', 'patch', 'put'].includes(method) ? { 'content-type': 'application/json' } : {}) },
            body: ['post', 'patch', 'put'].includes(method) ? '{}' : undefined,
            signal: abort.signal,
          });
          const text = headersOnly && res.status === 200 ? '' : await res.text();
          abort.abort();
          const allowed = hasPermission(role, permission!);
          if (allowed) {
            expect(res.status === 403 && text.includes('missing permission'), `${role} ${method} ${path}: ${res.status} ${text}`).toBe(false);
          } else {
            expect(res.status, `${role} ${method} ${path}`).toBe(403);
            expect(JSON.parse(text).error.message).toBe(`missing permission ${permission} (role ${role})`);
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(60);
  }, 60_000);

  it('100 parallel creates against room for 10 admit exactly 10; stop/start/delete keep the counters exact', async () => {
    const t = uid('quota');
    await p.createTenant(t, { quota: { cpu: '1', memory: '64Gi' } });
    const member = await p.createKey(t, 'member');
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => p.createAgent(member.key, { name: `a-${i}`, resources: { cpu: '100m', memory: '64Mi' } })));
    const created = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 403);
    expect(created).toHaveLength(10);
    expect(refused).toHaveLength(90);
    expect(refused[0]!.json.error.code).toBe('QUOTA_EXCEEDED');
    expect(refused[0]!.json.error.details).toMatchObject({ resource: 'cpu', used: 1000, requested: 100, limit: 1000 });
    expect(refused[0]!.json.error.message).toBe('quota exceeded for cpu: used 1 + requested 100m > limit 1');
    // Every rejection is also an event on the tenant (visible to the tenant, never to others).
    const rejections = (await p.expectStatus(200, 'GET', '/api/v1/events?limit=5000', { token: member.key })).json.items.filter(
      (e: { objectKind: string; reason: string }) => e.objectKind === 'Tenant' && e.reason === 'QuotaExceeded',
    );
    expect(rejections).toHaveLength(90);

    const admin = await p.createKey(t, 'tenant-admin');
    const quota = async () => (await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/quota`, { token: admin.key })).json;
    expect((await quota()).resources).toMatchObject({ cpuMillicores: { limit: 1000, used: 1000, free: 0 }, memoryMiB: { used: 640 }, agents: { used: 10, limit: null }, running: { used: 10 } });

    // Stopped agents hold no quota: stop one, the room is there; start it again, gone again.
    const first = created[0]!.json.id as string;
    await p.waitPhase(member.key, first, 'Running');
    await p.expectStatus(200, 'POST', `/api/v1/agents/${first}/stop`, { token: member.key });
    await p.waitPhase(member.key, first, 'Stopped');
    expect((await quota()).resources.cpuMillicores).toEqual({ limit: 1000, used: 900, free: 100 });
    const extra = await p.createAgent(member.key, { name: 'extra', resources: { cpu: '100m', memory: '64Mi' } });
    expect(extra.status).toBe(201);
    const again = await p.expectStatus(403, 'POST', `/api/v1/agents/${first}/start`, { token: member.key });
    expect(again.json.error.code).toBe('QUOTA_EXCEEDED');
    expect((await p.phaseOf(member.key, first)).phase).toBe('Stopped');
    await p.expectStatus(200, 'DELETE', `/api/v1/agents/${extra.json.id}`, { token: member.key });
    expect((await quota()).resources.cpuMillicores.used).toBe(900);
    await p.expectStatus(200, 'POST', `/api/v1/agents/${first}/start`, { token: member.key });
    expect((await quota()).resources.cpuMillicores.used).toBe(1000);
    // Deleting a stopped agent releases its record count only.
    const second = created[1]!.json.id as string;
    await p.expectStatus(200, 'POST', `/api/v1/agents/${second}/stop`, { token: member.key });
    await p.waitPhase(member.key, second, 'Stopped');
    await p.expectStatus(200, 'DELETE', `/api/v1/agents/${second}`, { token: member.key });
    expect((await quota()).resources).toMatchObject({ cpuMillicores: { used: 900 }, agents: { used: 9 }, running: { used: 9 } });
    // The counters equal a recount from the agents themselves.
    const live = (await p.platform.store.listAgents({ tenantId: t, limit: 1000 })).items.filter((a) => !['Stopped', 'Failed', 'Succeeded'].includes(a.status.phase));
    expect(live.reduce((s, a) => s + a.spec.resources.cpuMillicores, 0)).toBe(900);
  }, 60_000);

  it('per-agent maximum is refused with QUOTA_EXCEEDED even in queue mode', async () => {
    const t = uid('peragent');
    await p.createTenant(t, { admission: 'queue', quota: { perAgent: { memory: '256Mi' } } });
    const member = await p.createKey(t, 'member');
    const r = await p.createAgent(member.key, { name: 'big', resources: { memory: '1Gi' } });
    expect(r.status).toBe(403);
    expect(r.json.error.details).toMatchObject({ resource: 'perAgent.memory', requested: 1024, limit: 256 });
  });

  it('queueing: over-quota agents wait Pending/QuotaExceeded and are admitted by priority, then age', async () => {
    const t = uid('queue');
    await p.createTenant(t, { admission: 'queue', quota: { running: 1 } });
    const member = await p.createKey(t, 'member');
    const admin = await p.createKey(t, 'tenant-admin');
    const head = (await p.createAgent(member.key, { name: 'head' })).json.id as string;
    const ids: Record<string, string> = {};
    for (const [name, priority] of [
      ['low', 0],
      ['high-old', 5],
      ['high-new', 5],
      ['mid', 3],
    ] as const) {
      const r = await p.createAgent(member.key, { name, priority });
      expect(r.status).toBe(201);
      expect(r.json.status).toMatchObject({ phase: 'Pending', reason: 'QuotaExceeded' });
      ids[name] = r.json.id;
    }
    expect((await p.expectStatus(200, 'GET', `/api/v1/tenants/${t}/quota`, { token: admin.key })).json).toMatchObject({ queued: 4, resources: { running: { used: 1 } } });
    await new Promise((r) => setTimeout(r, 600));
    for (const id of Object.values(ids)) expect((await p.phaseOf(member.key, id)).reason).toBe('QuotaExceeded');
    const order: string[] = [];
    let current = head;
    for (let i = 0; i < 4; i++) {
      await p.waitPhase(member.key, current, 'Running');
      await p.expectStatus(200, 'POST', `/api/v1/agents/${current}/stop`, { token: member.key });
      const next = await p.waitFor('an admission', async () => {
        for (const [name, id] of Object.entries(ids)) {
          if (order.includes(name)) continue;
          if ((await p.phaseOf(member.key, id)).reason !== 'QuotaExceeded') return name;
        }
        return undefined;
      });
      order.push(next);
      current = ids[next]!;
    }
    expect(order).toEqual(['high-old', 'high-new', 'mid', 'low']);
    const events = (await p.expectStatus(200, 'GET', `/api/v1/agents/${ids.low}/events`, { token: member.key })).json.items.map((e: { reason: string }) => e.reason);
    expect(events).toEqual(expect.arrayContaining(['Created', 'QuotaExceeded', 'Admitted']));
  }, 60_000);

  it('audit log records every mutating request; tenant admins see only their tenant', async () => {
    const t = uid('audit');
    await p.createTenant(t);
    const admin = await p.createKey(t, 'tenant-admin');
    const viewer = await p.createKey(t, 'viewer');
    const made = await p.createAgent(admin.key, { name: 'audited' });
    await p.expectStatus(403, 'POST', '/api/v1/agents', { token: viewer.key, body: { name: 'nope', image: 'x' } });
    const mine = (await p.expectStatus(200, 'GET', '/api/v1/audit', { token: admin.key })).json.items as { tenantId: string; route: string; status: number; subject: string; targetId?: string; requestId: string }[];
    expect(new Set(mine.map((a) => a.tenantId))).toEqual(new Set([t]));
    expect(mine).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ route: '/api/v1/agents', status: 201, subject: `key:${admin.id}`, targetId: made.json.id }),
        expect.objectContaining({ route: '/api/v1/agents', status: 403, subject: `key:${viewer.id}` }),
      ]),
    );
    const all = (await p.expectStatus(200, 'GET', '/api/v1/audit?limit=1000')).json.items as { tenantId: string; route: string }[];
    expect(all.some((a) => a.tenantId === 'default' && a.route === '/api/v1/tenants')).toBe(true);
    await p.expectStatus(403, 'GET', '/api/v1/audit', { token: viewer.key });
  });

  it('X-Tenant lets the platform admin act in a tenant; others may not name another tenant', async () => {
    const t = uid('xt');
    await p.createTenant(t);
    const viaHeader = await p.request('POST', '/api/v1/agents', { headers: { 'x-tenant': t }, body: { name: 'by-admin', image: 'sim/x' } });
    expect(viaHeader.status).toBe(201);
    const member = await p.createKey(t, 'member');
    await p.expectStatus(200, 'GET', `/api/v1/agents/${viaHeader.json.id}`, { token: member.key });
    await p.expectStatus(404, 'GET', `/api/v1/agents/${viaHeader.json.id}`);
    await p.expectStatus(404, 'GET', '/api/v1/whoami', { headers: { 'x-tenant': 'no-such-tenant' } });
    await p.expectStatus(403, 'GET', '/api/v1/whoami', { token: member.key, headers: { 'x-tenant': 'default' } });
  });
});
