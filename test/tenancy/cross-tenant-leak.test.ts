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
  secretNames: string[];
  /** Never returned by any endpoint, to anyone. */
  secretValues: string[];
}

interface Route {
  method: string;
  path: string;
  /** Names of the path parameters, from the OpenAPI document. */
  pathParams: string[];
}

describe.each(kinds)('cross-tenant isolation (%s)', (kind) => {
  let p: TenancyPlatform;
  const sides: Side[] = [];
  let routes: Route[] = [];
  let nodeIds: string[] = [];

  beforeAll(async () => {
    p = await TenancyPlatform.start(kind);
    for (const label of ['leak-a', 'leak-b']) {
      const tenant = uid(label);
      await p.createTenant(tenant);
      const admin = await p.createKey(tenant, 'tenant-admin');
      const member = await p.createKey(tenant, 'member');
      const viewer = await p.createKey(tenant, 'viewer');
      const side: Side = { tenant, admin: admin.key, member: member.key, viewer: viewer.key, agentIds: [], agentNames: [], keyIds: [admin.id, member.id, viewer.id], secretNames: [], secretValues: [] };
      for (let i = 0; i < 3; i++) {
        const name = uid(`${label}-agent`);
        const r = await p.createAgent(member.key, { name, labels: { secret: uid('lbl') } });
        expect(r.status).toBe(201);
        side.agentIds.push(r.json.id);
        side.agentNames.push(name);
      }
      for (let i = 0; i < 2; i++) {
        const name = uid(`${label}-sec`);
        const value = `value-${uid(label)}-${i}`;
        await p.expectStatus(201, 'POST', '/api/v1/secrets', { token: member.key, body: { name, value } });
        side.secretNames.push(name);
        side.secretValues.push(value);
      }
      sides.push(side);
    }
    for (const s of sides) for (const id of s.agentIds) await p.waitPhase(s.member, id, 'Running');
    const doc = (await p.expectStatus(200, 'GET', '/openapi.json', { token: null })).json as {
      paths: Record<string, Record<string, { security?: unknown[]; parameters?: { name: string; in: string }[] }>>;
    };
    routes = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => !(op.security && op.security.length === 0))
        .map(([method, op]) => ({ method: method.toUpperCase(), path, pathParams: (op.parameters ?? []).filter((x) => x.in === 'path').map((x) => x.name) })),
    );
    nodeIds = ((await p.expectStatus(200, 'GET', '/api/v1/nodes')).json.items as { id: string }[]).map((n) => n.id);
    expect(nodeIds.length).toBeGreaterThan(0);
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  /** Strings that identify `s` (ids, names, key ids, secret names, tenant id) or must never leave it (secret values). */
  const identifiersOf = (s: Side): string[] => [s.tenant, ...s.agentIds, ...s.agentNames, ...s.keyIds, ...s.secretNames];

  /**
   * The value of one path parameter, from `target`'s objects. Node ids are shared (nodes
   * belong to no tenant); an unknown parameter fails, so a new route cannot go untested.
   */
  function paramValue(route: Route, name: string, target: Side, pick: <T>(xs: readonly T[]) => T): string {
    if (route.path.startsWith('/api/v1/nodes/') && name === 'id') return pick(nodeIds);
    if (route.path.startsWith('/api/v1/tenants/') && name === 'id') return target.tenant;
    if (route.path.startsWith('/api/v1/agents/') && name === 'id') return pick(target.agentIds);
    if (name === 'keyId') return pick(target.keyIds);
    if (name === 'name' && route.path.startsWith('/api/v1/secrets/')) return pick(target.secretNames);
    throw new Error(`${route.method} ${route.path}: no value for path parameter {${name}}; teach this test what it names`);
  }

  /** Reads a stream for a moment while `other` is active (creates and stops an agent); returns what arrived. */
  async function readStreamWhileOtherActs(res: Response, abort: AbortController, other: Side): Promise<string> {
    const reader = res.body!.getReader();
    const name = uid('busy');
    const made = await p.createAgent(other.member, { name });
    expect(made.status).toBe(201);
    other.agentIds.push(made.json.id);
    other.agentNames.push(name);
    await p.request('POST', `/api/v1/agents/${other.agentIds[0]}/stop`, { token: other.member });
    const chunks: string[] = [];
    const until = Date.now() + 400;
    while (Date.now() < until) {
      const r = await Promise.race([reader.read(), new Promise<undefined>((ok) => setTimeout(ok, 100))]);
      if (r && !r.done) chunks.push(new TextDecoder().decode(r.value));
    }
    abort.abort();
    return chunks.join('');
  }

  it('drives every endpoint with keys of two tenants: another tenant\u2019s objects are 404 and never appear', async () => {
    const seed = Number(process.env.LEAK_SEED ?? Date.now() % 1_000_000);
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const exercised = new Set<string>();
    let foreignHits = 0;
    let unfilteredStreams = 0;

    const drive = async (step: string, meIndex: number, token: string, route: Route, foreign: boolean): Promise<void> => {
      const me = sides[meIndex]!;
      const other = sides[1 - meIndex]!;
      const target = foreign ? other : me;
      let url = route.path;
      for (const name of route.pathParams) url = url.replace(`{${name}}`, paramValue(route, name, target, pick));
      expect(url, `${route.path}: every path parameter filled`).not.toMatch(/[{}]/);
      // Queries name the target too; the stream is opened unfiltered half the time.
      if (route.path === '/api/v1/events') url += `?agent=${pick(target.agentIds)}`;
      let unfiltered = false;
      if (route.path === '/api/v1/events/stream') {
        unfiltered = rnd() < 0.5;
        if (!unfiltered) url += `?agent=${pick(target.agentIds)}`;
      }
      if (route.path === '/api/v1/audit') url += `?tenant=${target.tenant}`;
      if (route.path.endsWith('/usage')) url += '?groupBy=agent';
      // Bodies are minimal: what matters is that nothing crosses, not that mutations succeed.
      const body = route.method === 'POST' && route.path === '/api/v1/agents' ? { name: uid('probe'), image: 'sim/x' } : ['POST', 'PATCH'].includes(route.method) ? {} : undefined;
      const abort = new AbortController();
      const res = await fetch(p.baseUrl + url, {
        method: route.method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        signal: abort.signal,
      });
      exercised.add(`${meIndex} ${route.method} ${route.path}`);
      let text: string;
      if (route.path.endsWith('/stream') && res.status === 200) {
        if (unfiltered) unfilteredStreams++;
        text = await readStreamWhileOtherActs(res, abort, other);
      } else {
        text = await res.text();
      }
      const context = `seed ${seed}, ${step}: ${route.method} ${url} as ${me.tenant} -> ${res.status} ${text.slice(0, 300)}`;
      if (route.path === '/api/v1/audit') {
        // The audit log echoes what this tenant itself sent (target ids); it must hold only its own records.
        if (res.status === 200) for (const a of JSON.parse(text).items as { tenantId: string }[]) expect(a.tenantId, context).toBe(me.tenant);
      } else {
        // Nothing identifying the other tenant may come back, except what this request named itself.
        for (const s of identifiersOf(other)) if (!url.includes(s)) expect(text.includes(s), context).toBe(false);
      }
      // Secret values never come back, not even to their own tenant.
      for (const v of [...me.secretValues, ...other.secretValues]) expect(text.includes(v), context).toBe(false);
      // A path naming the other tenant's object is 404 (403 only for a missing permission).
      if (foreign && route.pathParams.length > 0 && !route.path.startsWith('/api/v1/nodes/')) {
        foreignHits++;
        if (res.status === 403) expect(text, context).toContain('missing permission');
        else expect(res.status, context).toBe(404);
      }
      if (foreign && route.path === '/api/v1/events' && res.status === 200) expect(JSON.parse(text).items, context).toEqual([]);
    };

    // A deterministic pass: every route, by every key of each tenant, aimed at the other
    // tenant's objects and (but for deletes, which would only cut this test's own branch)
    // at its own.
    for (const meIndex of [0, 1]) {
      const me = sides[meIndex]!;
      for (const route of routes) {
        for (const token of [me.admin, me.member, me.viewer]) {
          await drive(`pass ${route.method} ${route.path}`, meIndex, token, route, true);
          if (route.method !== 'DELETE') await drive(`pass own ${route.method} ${route.path}`, meIndex, token, route, false);
        }
      }
    }
    // Then random picks: other orders, other objects, other keys.
    for (let i = 0; i < 400; i++) {
      const meIndex = rnd() < 0.5 ? 0 : 1;
      const me = sides[meIndex]!;
      const token = pick([me.admin, me.member, me.viewer]);
      const route = pick(routes);
      const foreign = rnd() < 0.6;
      if (!foreign && route.method === 'DELETE') continue;
      await drive(`step ${i}`, meIndex, token, route, foreign);
    }

    // Every method+path of /openapi.json was driven by each tenant's keys.
    const expected = [0, 1].flatMap((i) => routes.map((r) => `${i} ${r.method} ${r.path}`));
    expect([...expected].filter((x) => !exercised.has(x))).toEqual([]);
    expect(routes.length).toBeGreaterThan(30);
    expect(foreignHits).toBeGreaterThan(100);
    expect(unfilteredStreams).toBeGreaterThan(0);
    // The other tenant's objects were never touched by foreign stop/delete requests: its
    // agents and secrets are all there.
    for (const s of sides) {
      for (const id of s.agentIds) expect((await p.request('GET', `/api/v1/agents/${id}`, { token: s.viewer })).status).toBe(200);
      for (const name of s.secretNames) expect((await p.request('GET', `/api/v1/secrets/${name}`, { token: s.viewer })).status).toBe(200);
    }
  }, 300_000);

  it('a foreign secret is 404 for GET and DELETE, and stays', async () => {
    const [a, b] = sides as [Side, Side];
    for (const name of b.secretNames) {
      for (const token of [a.admin, a.member, a.viewer]) expect((await p.expectStatus(404, 'GET', `/api/v1/secrets/${name}`, { token })).json.error.code).toMatch(/NOT_FOUND$/);
      for (const token of [a.admin, a.member]) expect((await p.expectStatus(404, 'DELETE', `/api/v1/secrets/${name}`, { token })).json.error.code).toMatch(/NOT_FOUND$/);
      expect((await p.expectStatus(200, 'GET', `/api/v1/secrets/${name}`, { token: b.viewer })).json).toMatchObject({ name, tenantId: b.tenant });
    }
    const listed = (await p.expectStatus(200, 'GET', '/api/v1/secrets', { token: a.viewer })).json.items.map((x: { name: string }) => x.name);
    expect(listed).toEqual(expect.arrayContaining(a.secretNames));
    expect(listed.filter((n: string) => b.secretNames.includes(n))).toEqual([]);
  });

  it('a node\u2019s agent list shows only the caller\u2019s tenant', async () => {
    const [a, b] = sides as [Side, Side];
    const onNodes = async (token: string): Promise<{ id: string; tenantId: string }[]> => {
      const all: { id: string; tenantId: string }[] = [];
      for (const id of nodeIds) all.push(...((await p.expectStatus(200, 'GET', `/api/v1/nodes/${id}`, { token })).json.agentList as { id: string; tenantId: string }[]));
      return all;
    };
    // A fresh running agent per tenant (the drive above stops agents at random).
    const fresh: Record<string, string> = {};
    for (const s of [a, b]) {
      const r = await p.createAgent(s.member, { name: uid('on-node') });
      expect(r.status).toBe(201);
      s.agentIds.push(r.json.id);
      s.agentNames.push(r.json.name);
      await p.waitPhase(s.member, r.json.id, 'Running');
      fresh[s.tenant] = r.json.id;
    }
    // The platform admin sees both tenants' agents on the nodes, so the lists are not empty by accident.
    const everyone = (await onNodes(p.adminToken)).map((x) => x.id);
    expect(everyone).toEqual(expect.arrayContaining([fresh[a.tenant], fresh[b.tenant]]));
    for (const [me, other] of [
      [a, b],
      [b, a],
    ] as const) {
      const seen = await onNodes(me.viewer);
      expect(seen.map((x) => x.id)).toEqual(expect.arrayContaining([fresh[me.tenant]]));
      expect(new Set(seen.map((x) => x.tenantId))).toEqual(new Set([me.tenant]));
      expect(seen.filter((x) => other.agentIds.includes(x.id))).toEqual([]);
    }
  });

  it('the unfiltered event stream carries the tenant\u2019s own events and none of the other tenant\u2019s', async () => {
    const [a, b] = sides as [Side, Side];
    const abort = new AbortController();
    const res = await fetch(`${p.baseUrl}/api/v1/events/stream`, { headers: { authorization: `Bearer ${a.viewer}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = '';
    const reading = (async () => {
      for (;;) {
        const r = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        if (r.done) return;
        text += new TextDecoder().decode(r.value);
      }
    })();
    try {
      await p.waitFor('stream connected', async () => (text.includes(': connected') ? true : undefined));
      // Both tenants act at the same time.
      const [mine, theirs] = await Promise.all([p.createAgent(a.member, { name: uid('mine') }), p.createAgent(b.member, { name: uid('theirs') })]);
      expect(mine.status).toBe(201);
      expect(theirs.status).toBe(201);
      await p.request('POST', `/api/v1/agents/${b.agentIds[2]}/stop`, { token: b.member });
      await p.waitPhase(b.member, theirs.json.id, 'Running');
      await p.waitFor('own events on the stream', async () => (text.includes(mine.json.id) ? true : undefined));
      // Give the other tenant's events time to arrive, if they were (wrongly) going to.
      await new Promise((r) => setTimeout(r, 300));
      for (const s of [...identifiersOf(b), theirs.json.id, theirs.json.name]) expect(text.includes(s), `stream leaks ${s}`).toBe(false);
    } finally {
      abort.abort();
      await reading;
    }
  });

  it('lists, events and audit of one tenant never show the other', async () => {
    const [a, b] = sides as [Side, Side];
    for (const path of ['/api/v1/agents', '/api/v1/events?limit=5000', '/api/v1/tenants', '/api/v1/secrets']) {
      const r = await p.expectStatus(200, 'GET', path, { token: a.admin });
      for (const s of identifiersOf(b)) expect(r.text.includes(s), `${path} leaks ${s}`).toBe(false);
    }
    const audit = (await p.expectStatus(200, 'GET', '/api/v1/audit?limit=1000', { token: a.admin })).json.items as { tenantId: string }[];
    expect(audit.length).toBeGreaterThan(0);
    expect(new Set(audit.map((x) => x.tenantId))).toEqual(new Set([a.tenant]));
    const listed = (await p.expectStatus(200, 'GET', '/api/v1/agents?limit=1000', { token: a.viewer })).json.items as { id: string }[];
    expect(listed.map((x) => x.id)).toEqual(expect.arrayContaining(a.agentIds));
    expect(listed.map((x) => x.id).filter((id) => b.agentIds.includes(id))).toEqual([]);
  });
});
