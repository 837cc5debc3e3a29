/**
 * GET /ready when the store stops answering: the platform runs on PostgreSQL reached
 * through a TCP relay this test owns, so "the database went away" is a real lost
 * connection (the shared PostgreSQL server is not stopped: other files use it).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScratchDatabase, probePostgres, type ScratchDatabase } from '../crash/scratch-database.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { TestPlatform } from './harness.js';

const PG_URL = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const hasDocker = await requireDocker();
const pgProbe = await probePostgres(PG_URL);
if (!pgProbe.ok && isCI) throw new Error(`CI=true but PostgreSQL at ${PG_URL} is unreachable: ${pgProbe.reason}`);

interface ReadyJson {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
  error?: { code: string; message: string };
}

/** A TCP relay to `target` that can be cut (listener closed, every connection reset) and brought back on the same port. */
class TcpRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        // A reset on one side ends the other; the error itself is expected when cut.
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    this.server = server;
  }

  /** New connections are refused, existing ones reset: the database is gone for the platform. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.resetAndDestroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe.skipIf(!hasDocker || !pgProbe.ok)('/ready when the store is unreachable (PostgreSQL behind a relay)', () => {
  let db: ScratchDatabase;
  let relay: TcpRelay;
  let p: TestPlatform;

  beforeAll(async () => {
    db = await createScratchDatabase(PG_URL);
    const target = new URL(db.url);
    relay = new TcpRelay({ host: target.hostname, port: Number(target.port || 5432) });
    await relay.open();
    const viaRelay = new URL(db.url);
    viaRelay.host = `127.0.0.1:${relay.port}`;
    p = await TestPlatform.start({ env: { AGENT_PLATFORM_DATABASE_URL: viaRelay.toString() } });
  }, 60_000);

  afterAll(async () => {
    await relay?.open().catch(() => undefined);
    await p?.close();
    await relay?.cut();
    await db?.drop();
  }, 60_000);

  it('answers 503 NOT_READY naming the store while the database is gone, and 200 again once it is back', async () => {
    const before = await p.request<ReadyJson>('GET', '/ready', { token: null });
    expect(before.status, before.text).toBe(200);
    expect(before.json.checks.store).toEqual({ ok: true });

    await relay.cut();
    const t0 = Date.now();
    const down = await p.request<ReadyJson>('GET', '/ready', { token: null });
    // Connection refused is immediate; the pool's 5 s connect timeout is the worst case.
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(down.status, down.text).toBe(503);
    expect(down.json.status).toBe('not ready');
    expect(down.json.checks.store?.ok).toBe(false);
    expect(down.json.checks.store?.error).toBeTruthy();
    // Only the store fails: the runtime still answers, and the message names the store.
    expect(down.json.checks[`runtime:${p.config.nodeName}`]).toEqual({ ok: true });
    expect(down.json.error?.code).toBe('NOT_READY');
    expect(down.json.error?.message).toMatch(/^not ready: store \(/);
    expect(down.json.error?.message).not.toContain('runtime:');
    // Liveness is not readiness: the process itself answers.
    expect((await p.request('GET', '/health', { token: null })).status).toBe(200);
    // An API call that needs the store is a 503 in the error shape, not a 500.
    const list = await p.request<{ error: { code: string } }>('GET', '/api/v1/agents');
    expect(list.status, list.text).toBe(503);
    expect(list.json.error.code).toBe('STORE_UNAVAILABLE');

    await relay.open();
    const deadline = Date.now() + 15_000;
    let again = await p.request<ReadyJson>('GET', '/ready', { token: null });
    while (again.status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      again = await p.request<ReadyJson>('GET', '/ready', { token: null });
    }
    expect(again.status, again.text).toBe(200);
    expect(again.json.checks.store).toEqual({ ok: true });
  }, 40_000);
});
