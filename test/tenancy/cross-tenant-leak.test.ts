import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenancyPlatform, storeKinds, uid } from './tenancy-harness.js';

const kinds = await storeKinds();

/** A deterministic PRNG (mulberry32), so a failing sequence can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Side {
  tenant: string;
  admin: string;
  member: string;
  viewer: string;
  agentIds: string[];
  agentNames: string[];
  keyIds: string[];
}

describe.each(kinds)('cross-tenant isolation (%s)', (kind) => {
  let p: TenancyPlatform;
  const sides: Side[] = [];
  let routes: { method: string; path: string }[] = [];

  beforeAll(async () => {
    p = await TenancyPlatform.start(kind);
    for (const label of ['leak-a', 'leak-b']) {
      const tenant = uid(label);
      await p.createTenant(tenant);
      const admin = await p.createKey(tenant, 'tenant-admin');
      const member = await p.createKey(tenant, 'member');
      const viewer = await p.createKey(tenant, 'viewer');
      const side: Side = { tenant, admin: admin.key, member: member.key, viewer: viewer.key, agentIds: [], agentNames: [], keyIds: [admin.id, member.id, viewer.id] };
      for (let i = 0; i < 3; i++) {
        const name = uid(`${label}-agent`);
        const r = await p.createAgent(member.key, { name, labels: { secret: uid('lbl') } });
        expect(r.status).toBe(201);
        side.agentIds.push(r.json.id);
        side.agentNames.push(name);
      }
      sides.push(side);
    }
    for (const s of sides) for (const id of s.agentIds) await p.waitPhase(s.member, id, 'Running');
    const doc = (await p.expectStatus(200, 'GET', '/openapi.json', { token: null })).json as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => !(op.security && op.security.length === 0)).map(([method]) => ({ method: method.toUpperCase(), path })));
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  /** Strings that identify `s` (ids, names, key ids, tenant id). */
  const secretsOf = (s: Side): string[] => [s.tenant, ...s.agentIds, ...s.agentNames, ...s.keyIds];

  it('drives every endpoint with keys of two tenants: another tenant\u2019s objects are 404 and never appear', async () => {
    const seed = Number(process.env.LEAK_SEED ?? Date.now() % 1_000_000);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    let foreignHits = 0;
    for (let i = 0; i < 400; i++) {
      const meIndex = rnd() < 0.5 ? 0 : 1;
      const me = sides[meIndex]!;
      const other = sides[1 - meIndex]!;
      const token = pick([me.admin, me.member, me.viewer]);
      const route = pick(routes);
      const foreign = rnd() < 0.6;
      // Deleting one's own objects (keys, agents) would only cut this test's own branch.
      if (!foreign && route.method === 'DELETE') continue;
      const target = foreign ? other : me;
      // Fill path parameters with the target's objects; queries name the target too.
      let url = route.path
        .replace('{keyId}', pick(target.keyIds))
        .replace('{id}', route.path.startsWith('/api/v1/tenants') ? target.tenant : route.path.startsWith('/api/v1/nodes') ? 'sim-00000' : pick(target.agentIds));
      if (route.path === '/api/v1/events' || route.path === '/api/v1/events/stream') url += `?agent=${pick(target.agentIds)}`;
      if (route.path === '/api/v1/audit') url += `?tenant=${target.tenant}`;
      if (route.path.endsWith('/usage')) url += '?groupBy=agent';
      // Mutations: only ones that would be harmful if they crossed (stop/delete); bodies are minimal.
      const body = route.method === 'POST' && route.path === '/api/v1/agents' ? { name: uid('probe'), image: 'sim/x' } : ['POST', 'PATCH'].includes(route.method) ? {} : undefined;
      const abort = new AbortController();
      const res = await fetch(p.baseUrl + url, {
        method: route.method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: abort.signal,
      });
      let text: string;
      if (route.path.endsWith('/stream') && res.status === 200) {
        // Read the stream for a moment while the other tenant acts.
        const reader = res.body!.getReader();
        await p.request('POST', `/api/v1/agents/${pick(other.agentIds)}/stop`, { token: other.member });
        const chunks: string[] = [];
        const until = Date.now() + 300;
        while (Date.now() < until) {
          const r = await Promise.race([reader.read(), new Promise<undefined>((ok) => setTimeout(ok, 100))]);
          if (r && !r.done) chunks.push(new TextDecoder().decode(r.value));
        }
        abort.abort();
        text = chunks.join('');
      } else {
        text = await res.text();
      }
      const context = `seed ${seed}, step ${i}: ${route.method} ${url} as ${me.tenant} -> ${res.status} ${text.slice(0, 300)}`;
      if (route.path === '/api/v1/audit') {
        // The audit log echoes what this tenant itself sent (target ids); it must hold only its own records.
        if (res.status === 200) for (const a of JSON.parse(text).items as { tenantId: string }[]) expect(a.tenantId, context).toBe(me.tenant);
      } else {
        // Nothing identifying the other tenant may come back, except what this request named itself.
        for (const s of secretsOf(other)) if (!url.includes(s)) expect(text.includes(s), context).toBe(false);
      }
      // A path naming the other tenant's object is 404 (403 only for a missing permission).
      if (foreign && /\{(id|keyId)\}/.test(route.path) && !route.path.startsWith('/api/v1/nodes')) {
        foreignHits++;
        if (res.status === 403) expect(text, context).toContain('missing permission');
        else expect(res.status, context).toBe(404);
      }
      if (foreign && route.path === '/api/v1/events' && res.status === 200) expect(JSON.parse(text).items, context).toEqual([]);
    }
    expect(foreignHits).toBeGreaterThan(50);
    // The other tenant's agents were never touched by foreign stop/delete requests: they
    // exist, and only their own members stopped some.
    for (const s of sides) for (const id of s.agentIds) expect((await p.request('GET', `/api/v1/agents/${id}`, { token: s.viewer })).status).toBe(200);
  }, 120_000);

  it('lists, events and audit of one tenant never show the other', async () => {
    const [a, b] = sides as [Side, Side];
    for (const path of ['/api/v1/agents', '/api/v1/events?limit=5000', '/api/v1/tenants']) {
      const r = await p.expectStatus(200, 'GET', path, { token: a.admin });
      for (const s of secretsOf(b)) expect(r.text.includes(s), `${path} leaks ${s}`).toBe(false);
    }
    const audit = (await p.expectStatus(200, 'GET', '/api/v1/audit?limit=1000', { token: a.admin })).json.items as { tenantId: string }[];
    expect(audit.length).toBeGreaterThan(0);
    expect(new Set(audit.map((x) => x.tenantId))).toEqual(new Set([a.tenant]));
    const listed = (await p.expectStatus(200, 'GET', '/api/v1/agents?limit=1000', { token: a.viewer })).json.items as { id: string }[];
    expect(listed.map((x) => x.id)).toEqual(expect.arrayContaining(a.agentIds));
    expect(listed.map((x) => x.id).filter((id) => b.agentIds.includes(id))).toEqual([]);
  });
});
