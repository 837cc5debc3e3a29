import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { PlatformEvent } from '../../src/domain/event.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { openStore } from '../../src/store/open-store.js';
import type { UsageRecord } from '../../src/store/store.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../helpers/busybox-image.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { freePort, startPlatformProcess, type PlatformProcess } from './platform-process.js';
import { createScratchDatabase, probePostgres } from './scratch-database.js';

/**
 * Issue 6: "a restart of the control plane neither double counts nor leaves a gap longer
 * than one reconcile interval", on the whole platform: a real Docker agent on a platform
 * process that is killed with SIGKILL mid-run and started again. The agent keeps running
 * meanwhile (its container does not depend on the control plane), so its downtime is
 * Running time and is billed, by the restarted meter resuming from the persisted
 * accrued_until. The ledger's pieces must tile the Running time: no overlap, no hole.
 *
 * The shared dockerd is enough: the test looks only at its own agent's container (the
 * platform sweeps only containers of its own installation).
 */

const ADMIN_TOKEN = `ledger-${randomBytes(12).toString('hex')}`;
/** Short, so a few pieces are closed before the kill and after the restart. */
const ACCRUAL_INTERVAL_MS = 1_000;
const RESYNC_INTERVAL_MS = 500;
const TEST_TIMEOUT_MS = 180_000;
const pgAdminUrl = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const hasDocker = await requireDocker();
const pg = hasDocker ? await probePostgres(pgAdminUrl) : ({ ok: false, reason: 'docker missing' } as const);

interface AgentBody {
  id: string;
  status: { phase: string; startedAt?: string | number; finishedAt?: string | number };
}

async function api<T>(platform: PlatformProcess, method: string, path: string, body?: unknown): Promise<{ status: number; json: T; text: string }> {
  const res = await fetch(platform.baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T, text };
}

async function waitForPhase(platform: PlatformProcess, id: string, phase: string, timeoutMs = 60_000): Promise<AgentBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api<AgentBody>(platform, 'GET', `/api/v1/agents/${id}`);
    if (r.status === 200 && r.json.status.phase === phase) return r.json;
    if (Date.now() > deadline) throw new Error(`agent ${id} not ${phase} within ${timeoutMs} ms: ${r.status} ${r.text}\nplatform output:\n${platform.output()}`);
    await sleep(100);
  }
}

/** [entered Running, left Running) intervals from the stored phase-change events (data.from/to). */
function runningIntervals(events: PlatformEvent[]): { fromMs: number; toMs: number | undefined }[] {
  const out: { fromMs: number; toMs: number | undefined }[] = [];
  for (const e of [...events].sort((a, b) => a.id - b.id)) {
    const change = e.data as { from?: string; to?: string } | undefined;
    if (change?.to === 'Running' && change.from !== 'Running') out.push({ fromMs: e.time, toMs: undefined });
    else if (change?.from === 'Running' && change.to !== 'Running' && out.at(-1)?.toMs === undefined && out.length > 0) out.at(-1)!.toMs = e.time;
  }
  return out;
}

const stores = [
  { name: 'sqlite', setup: async () => ({ url: '', dispose: async () => undefined }) },
  {
    name: 'postgres',
    setup: async () => {
      const db = await createScratchDatabase(pgAdminUrl);
      return { url: db.url, dispose: () => db.drop() };
    },
  },
];

describe.skipIf(!hasDocker)('usage ledger across a kill -9 of the control plane (real dockerd)', () => {
  const platforms: PlatformProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const p of platforms.splice(0)) p.kill9();
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => console.warn('cleanup failed', err));
  }, 60_000);

  // PostgreSQL when it answers; when it does not, only CI=true runs (and fails) that case.
  for (const store of stores.filter((s) => s.name !== 'postgres' || pg.ok || isCI)) {
    it(
      `${store.name}: the pieces tile the Running time: no overlap, no hole, the downtime billed once`,
      async () => {
        if (store.name === 'postgres' && !pg.ok) throw new Error(`PostgreSQL at ${pgAdminUrl} is unreachable: ${pg.reason}`);
        await ensureBusyboxImage();
        const dataDir = await mkdtemp(join(tmpdir(), 'ap-ledger-crash-'));
        cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
        const db = await store.setup();
        cleanups.push(db.dispose);
        const env = {
          AGENT_PLATFORM_DATABASE_URL: db.url,
          AGENT_PLATFORM_DATA_DIR: dataDir,
          AGENT_PLATFORM_ADMIN_TOKEN: ADMIN_TOKEN,
          AGENT_PLATFORM_RESYNC_INTERVAL_MS: String(RESYNC_INTERVAL_MS),
          AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS: String(ACCRUAL_INTERVAL_MS),
          AGENT_PLATFORM_STOP_GRACE_MS: '2000',
          AGENT_PLATFORM_LOG_LEVEL: 'warn',
          AGENT_PLATFORM_NODE_NAME: 'local',
        };
        const port = await freePort();
        const start = async (): Promise<PlatformProcess> => {
          const p = await startPlatformProcess(env, port);
          platforms.push(p);
          return p;
        };

        // ---- first life: the agent runs, a few pieces are closed, then SIGKILL --------
        let platform = await start();
        const created = await api<AgentBody>(platform, 'POST', '/api/v1/agents', {
          name: `ledger-${randomBytes(3).toString('hex')}`,
          image: BUSYBOX_IMAGE,
          // Sleeps; ends at once on SIGTERM, so Stopping is short.
          command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'],
          resources: { cpu: '100m', memory: '16Mi' },
        });
        expect(created.status, created.text).toBe(201);
        const id = created.json.id;
        cleanups.push(async () => {
          // The container outlives a killed platform: remove it whatever happened.
          const { default: Docker } = await import('dockerode');
          const docker = new Docker();
          const list = await docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${id}`] } });
          await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
        });
        await waitForPhase(platform, id, 'Running');
        await sleep(3.5 * ACCRUAL_INTERVAL_MS);
        const killedAtMs = Date.now();
        platform.kill9();
        await platform.exited;
        // Down for a while: the agent keeps running, nothing is closed meanwhile.
        await sleep(2 * ACCRUAL_INTERVAL_MS);

        // ---- second life: the meter resumes, the agent runs on, then is stopped ---------
        const respawnedAtMs = Date.now();
        platform = await start();
        const restartedAtMs = Date.now();
        expect((await waitForPhase(platform, id, 'Running')).id).toBe(id);
        await sleep(3.5 * ACCRUAL_INTERVAL_MS);
        const stopped = await api(platform, 'POST', `/api/v1/agents/${id}/stop`);
        expect(stopped.status, stopped.text).toBe(200);
        const final = await waitForPhase(platform, id, 'Stopped');
        await platform.stop();

        // ---- the books ------------------------------------------------------------------
        const books = await openStore(db.url || undefined, dataDir);
        let pieces: UsageRecord[];
        let events: PlatformEvent[];
        try {
          pieces = (await books.listUsage({ tenantId: 'default' })).filter((r) => r.agentId === id).sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs);
          events = await books.listEvents({ objectKind: 'Agent', objectId: id, limit: 1000 });
        } finally {
          await books.close();
        }
        const runs = runningIntervals(events);
        // One run: the restart did not stop or restart the agent.
        expect(runs, JSON.stringify(events.map((e) => [e.reason, e.data]))).toHaveLength(1);
        const run = runs[0]!;
        expect(run.toMs, 'left Running').toBeDefined();
        const runningMs = run.toMs! - run.fromMs;
        const billedMs = pieces.reduce((s, r) => s + (r.endMs - r.startMs), 0);
        console.info(
          `[${store.name}] Running ${runningMs} ms, billed ${billedMs} ms in ${pieces.length} pieces; killed at +${killedAtMs - run.fromMs} ms, ready again at +${restartedAtMs - run.fromMs} ms`,
        );

        // Pieces before the kill and after the restart, and one spanning the downtime.
        expect(pieces.some((r) => r.endMs <= killedAtMs)).toBe(true);
        expect(pieces.some((r) => r.startMs >= restartedAtMs)).toBe(true);
        expect(pieces.some((r) => r.startMs <= killedAtMs && r.endMs >= respawnedAtMs), 'the downtime is one piece, billed by the restarted meter').toBe(true);
        // No double count: pieces never overlap. No hole longer than one interval (in fact none).
        for (let i = 1; i < pieces.length; i++) {
          expect(pieces[i]!.startMs, `piece ${i} starts after piece ${i - 1} ends`).toBeGreaterThanOrEqual(pieces[i - 1]!.endMs);
          expect(pieces[i]!.startMs - pieces[i - 1]!.endMs, `hole before piece ${i}`).toBeLessThanOrEqual(ACCRUAL_INTERVAL_MS);
        }
        // The pieces cover the Running time, from its start to its end, within one interval each side.
        expect(Math.abs(pieces[0]!.startMs - run.fromMs)).toBeLessThanOrEqual(ACCRUAL_INTERVAL_MS);
        expect(Math.abs(pieces.at(-1)!.endMs - run.toMs!)).toBeLessThanOrEqual(ACCRUAL_INTERVAL_MS);
        expect(Math.abs(billedMs - runningMs)).toBeLessThanOrEqual(ACCRUAL_INTERVAL_MS);
        // The API's startedAt..finishedAt brackets it (finishedAt also counts the short Stopping).
        const startedAtMs = new Date(final.status.startedAt!).getTime();
        const finishedAtMs = new Date(final.status.finishedAt!).getTime();
        expect(Math.abs(startedAtMs - run.fromMs)).toBeLessThanOrEqual(ACCRUAL_INTERVAL_MS);
        expect(billedMs).toBeLessThanOrEqual(finishedAtMs - startedAtMs + ACCRUAL_INTERVAL_MS);
        expect(billedMs).toBeGreaterThanOrEqual(finishedAtMs - startedAtMs - 3_000 - ACCRUAL_INTERVAL_MS);
        // Requests, as billed: each piece carries the agent's.
        for (const r of pieces) expect([r.cpuMillicores, r.memoryMiB]).toEqual([100, 16]);
      },
      TEST_TIMEOUT_MS,
    );
  }
});
