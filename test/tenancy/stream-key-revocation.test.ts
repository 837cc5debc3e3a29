import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenancyPlatform, storeKinds, uid } from './tenancy-harness.js';

const kinds = await storeKinds();
const RECHECK_MS = 200;

/** An open streaming response, read in the background. */
interface OpenStream {
  /** Everything received so far. */
  text(): string;
  /** Resolves with the time (ms epoch) the server ended the body. */
  ended: Promise<number>;
  abort(): void;
}

async function openStream(p: TenancyPlatform, path: string, token: string): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await fetch(p.baseUrl + path, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
  expect(res.status, `${path}: ${res.status}`).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let received = '';
  const ended = (async () => {
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) return Date.now();
        received += decoder.decode(r.value, { stream: true });
      }
    } catch (err) {
      if (abort.signal.aborted) return new Promise<number>(() => undefined); // we hung up: never "ended by the server"
      throw err;
    }
  })();
  return { text: () => received, ended, abort: () => abort.abort() };
}

const within = <T>(ms: number, p: Promise<T>, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

describe.each(kinds)('open streams end when their key is revoked or expires (%s)', (kind) => {
  let p: TenancyPlatform;
  let tenant: string;
  let admin: { key: string; id: string };
  let agentId: string;

  beforeAll(async () => {
    p = await TenancyPlatform.start(kind, { AGENT_PLATFORM_STREAM_KEY_RECHECK_MS: String(RECHECK_MS) });
    tenant = uid('streams');
    await p.createTenant(tenant);
    admin = await p.createKey(tenant, 'tenant-admin');
    // One line at start: a follow response sends its head with the first line.
    const r = await p.createAgent(admin.key, { name: 'quiet', command: ['sh', '-c', 'echo ready; sleep 100000'] });
    expect(r.status).toBe(201);
    agentId = r.json.id;
    await p.waitPhase(admin.key, agentId, 'Running');
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  for (const [label, path] of [
    ['event stream', () => '/api/v1/events/stream'],
    ['log follow', () => `/api/v1/agents/${agentId}/logs?follow=true`],
  ] as const) {
    it(`${label}: a revoked key's stream ends within the recheck interval; another key's stays open`, async () => {
      const doomed = await p.createKey(tenant, 'viewer');
      const kept = await p.createKey(tenant, 'viewer');
      const a = await openStream(p, path(), doomed.key);
      const b = await openStream(p, path(), kept.key);
      try {
        // Both stay open while nothing changes (several rechecks).
        await new Promise((r) => setTimeout(r, 4 * RECHECK_MS));
        const early = await Promise.race([a.ended, b.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 0))]);
        expect(early).toBe('open');
        const revokedAt = Date.now();
        await p.expectStatus(200, 'DELETE', `/api/v1/tenants/${tenant}/keys/${doomed.id}`, { token: admin.key });
        const endedAt = await within(5_000, a.ended, `${label} of the revoked key`);
        expect(endedAt - revokedAt).toBeLessThan(RECHECK_MS + 2_000);
        if (label === 'event stream') {
          expect(a.text()).toContain('event: unauthenticated');
          expect(a.text()).toContain('"code":"API_KEY_REVOKED"');
        }
        // The other key's stream is untouched, and a new request with the revoked key is 401.
        const still = await Promise.race([b.ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 3 * RECHECK_MS))]);
        expect(still).toBe('open');
        expect((await p.expectStatus(401, 'GET', path(), { token: doomed.key })).json.error.code).toBe('API_KEY_REVOKED');
      } finally {
        a.abort();
        b.abort();
      }
    });

    it(`${label}: an expiring key's stream ends at its expiry`, async () => {
      // The lifetime must cover the key's creation and the stream's opening, or on a loaded
      // machine the stream is refused with 401 before it can show anything.
      const lifeMs = 5_000;
      const soon = await p.createKey(tenant, 'viewer', { expiresAt: new Date(Date.now() + lifeMs).toISOString() });
      // Measured from the expiry the server stored, not from when this test asked for it.
      const expiresAt = Date.parse(soon.expiresAt!);
      expect(expiresAt).toBeGreaterThan(0);
      const s = await openStream(p, path(), soon.key);
      try {
        const endedAt = await within(lifeMs + 10_000, s.ended, `${label} of the expiring key`);
        // Not before the expiry, and soon after it: a check is scheduled for the expiry
        // itself, so the margin is only for a loaded machine.
        expect(endedAt).toBeGreaterThanOrEqual(expiresAt);
        expect(endedAt - expiresAt).toBeLessThan(RECHECK_MS + 3_000);
        if (label === 'event stream') expect(s.text()).toContain('"code":"API_KEY_EXPIRED"');
      } finally {
        s.abort();
      }
    });
  }
});
