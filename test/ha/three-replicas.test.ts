import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import pg from 'pg';
import { AGENT_ID_LABEL, INSTANCE_LABEL } from '../../src/runtime/runtime.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../helpers/busybox-image.js';
import { isCI, requireDocker } from '../helpers/require-docker.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';
import { freePort, startPlatformProcess, type PlatformProcess } from '../crash/platform-process.js';
import { probePostgres } from '../crash/scratch-database.js';

/**
 * Issue 7, highly available control plane: three replicas (separate processes) share
 * one PostgreSQL database and one Redis; one leads (runs the controllers), all serve the
 * API. kill -9 of the leader while agents are being created: another replica leads
 * within 10 s, every acknowledged agent exists once and runs, one container each.
 *
 * They share the local dockerd (node "local"): the containers carry the installation id
 * from the shared store, so the replicas agree on what is theirs, and the orphan sweep
 * never touches containers of other tests on the same daemon.
 */

const ADMIN_TOKEN = `ha-${randomBytes(12).toString('hex')}`;
/**
 * Short, for a quick takeover. On this 2-core machine, starting 30 containers while three
 * replicas and vitest run can stall a replica's event loop for most of a second (much of
 * it docker-modem formatting every request's options); a leader that then misses its
 * renewal deadline steps down, correctly, and another is elected. The test allows such a
 * later term but prints it.
 */
const LEASE_TTL_MS = 2_000;
const TAKEOVER_LIMIT_MS = 10_000;
const AGENTS = 30;
const pgAdminUrl = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const hasDocker = await requireDocker();
const hasRedis = await requireRedis();
const pgProbe = await probePostgres(pgAdminUrl);
if (!pgProbe.ok && isCI) throw new Error(`CI=true but PostgreSQL at ${pgAdminUrl} is unreachable: ${pgProbe.reason}`);
const ready = hasDocker && hasRedis && pgProbe.ok;

interface AgentBody {
  id: string;
  name: string;
  status: { phase: string; containerId?: string; reason?: string };
}

interface LeaderStatus {
  replicaId: string;
  mode: string;
  leader: boolean;
  fencingToken?: number;
  holder?: { replicaId: string; fencingToken: number } | null;
}

interface Replica {
  id: string;
  process: PlatformProcess;
  alive: boolean;
}

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function call(replica: Replica, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(`${replica.process.baseUrl}${path}`, {
    method,
    headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, text: await res.text() };
}

async function leaderStatus(replica: Replica): Promise<LeaderStatus | undefined> {
  try {
    const r = await call(replica, 'GET', '/api/v1/leader');
    return r.status === 200 ? (JSON.parse(r.text) as LeaderStatus) : undefined;
  } catch {
    return undefined;
  }
}

/** The replica that says it leads and that the lease names, as seen through `via`. */
async function currentLeader(replicas: Replica[]): Promise<Replica | undefined> {
  for (const r of replicas.filter((x) => x.alive)) {
    const s = await leaderStatus(r);
    if (s?.leader && s.holder?.replicaId === r.id) return r;
  }
  return undefined;
}

async function listAgents(replica: Replica): Promise<AgentBody[]> {
  const r = await call(replica, 'GET', '/api/v1/agents?limit=1000');
  if (r.status !== 200) throw new Error(`GET /api/v1/agents: ${r.status} ${r.text}`);
  return (JSON.parse(r.text) as { items: AgentBody[] }).items;
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, describeState: () => Promise<string>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms: ${await describeState()}`);
    await sleep(intervalMs);
  }
}

// Small requests: 31 agents must fit the 2-core node's CPU (the default is 100m each).
// One line of output first, for the logs read through a follower.
const agentBody = (name: string): Record<string, unknown> => ({
  name,
  image: BUSYBOX_IMAGE,
  command: ['sh', '-c', 'echo "hello from $AGENT_NAME"; sleep 300'],
  restartPolicy: 'Always',
  resources: { cpu: '10m', memory: '16Mi' },
});

const phaseSummary = (agents: AgentBody[]): string => {
  const counts = new Map<string, number>();
  for (const a of agents) counts.set(`${a.status.phase}/${a.status.reason ?? ''}`, (counts.get(`${a.status.phase}/${a.status.reason ?? ''}`) ?? 0) + 1);
  return `${agents.length} agents: ${[...counts].map(([k, n]) => `${k}=${n}`).join(', ')}`;
};

/** Reads a Server-Sent Events stream, collecting the parsed data of each event. */
function openEventStream(replica: Replica): { events: { objectId: string; reason: string; data?: { to?: string } }[]; connected: Promise<void>; close(): void } {
  const ac = new AbortController();
  const events: { objectId: string; reason: string; data?: { to?: string } }[] = [];
  let onConnected!: () => void;
  let onFailed!: (err: unknown) => void;
  const connected = new Promise<void>((resolve, reject) => {
    onConnected = resolve;
    onFailed = reject;
  });
  void (async () => {
    try {
      const res = await fetch(`${replica.process.baseUrl}/api/v1/events/stream`, { headers: auth, signal: ac.signal });
      if (res.status !== 200 || !res.body) throw new Error(`SSE: ${res.status}`);
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(': connected')) onConnected();
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (data) events.push(JSON.parse(data) as { objectId: string; reason: string; data?: { to?: string } });
        }
      }
    } catch (err) {
      onFailed(err);
    }
  })();
  return { events, connected, close: () => ac.abort() };
}

if (!ready) {
  describe.skip(`three replicas (needs Docker ${hasDocker}, Redis ${hasRedis}, PostgreSQL ${pgProbe.ok})`, () => {
    it('skipped', () => undefined);
  });
} else {
  describe('highly available control plane: three replicas, one PostgreSQL, one Redis', () => {
    const dbName = `ap_ha_${randomBytes(5).toString('hex')}`;
    const redisPrefix = `ap-test-${randomBytes(6).toString('hex')}:`;
    const docker = new Docker();
    const replicas: Replica[] = [];
    const dataDirs: string[] = [];
    let instanceId = '';

    const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
      const client = new pg.Client({ connectionString: pgAdminUrl });
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end();
      }
    };

    beforeAll(async () => {
      await ensureBusyboxImage();
      await admin((c) => c.query(`create database "${dbName}"`));
      const dbUrl = new URL(pgAdminUrl);
      dbUrl.pathname = `/${dbName}`;
      // Started together, as a Deployment would: migrations and bootstrap race on purpose.
      const started = await Promise.all(
        ['replica-a', 'replica-b', 'replica-c'].map(async (id) => {
          const dataDir = await mkdtemp(join(tmpdir(), 'ap-ha-'));
          dataDirs.push(dataDir);
          const env = {
            AGENT_PLATFORM_DATABASE_URL: dbUrl.toString(),
            AGENT_PLATFORM_REDIS_URL: testRedisUrl,
            AGENT_PLATFORM_REDIS_PREFIX: redisPrefix,
            AGENT_PLATFORM_LEASE_TTL_MS: String(LEASE_TTL_MS),
            AGENT_PLATFORM_REPLICA_ID: id,
            AGENT_PLATFORM_DATA_DIR: dataDir,
            AGENT_PLATFORM_ADMIN_TOKEN: ADMIN_TOKEN,
            AGENT_PLATFORM_RESYNC_INTERVAL_MS: '1000',
            AGENT_PLATFORM_LOG_LEVEL: 'warn',
            AGENT_PLATFORM_NODE_NAME: 'local',
          };
          return { id, process: await startPlatformProcess(env, await freePort()), alive: true };
        }),
      );
      replicas.push(...started);
      instanceId = await admin(async (c) => {
        const client = new pg.Client({ connectionString: dbUrl.toString() });
        await client.connect();
        try {
          const r = await client.query<{ value: string }>(`select value from settings where key = 'platform_instance_id'`);
          return r.rows[0]?.value ?? '';
        } finally {
          await client.end();
        }
      }).catch(() => '');
    }, 180_000);

    afterAll(async () => {
      await Promise.all(replicas.map((r) => r.process.stop(10_000).catch(() => r.process.kill9())));
      // Containers of this installation (instance label), else of the agents it made.
      const filters = instanceId ? { label: [`${INSTANCE_LABEL}=${instanceId}`] } : { label: [AGENT_ID_LABEL] };
      const mine = await docker.listContainers({ all: true, filters });
      const ours = instanceId ? mine : mine.filter((c) => createdIds.has(c.Labels[AGENT_ID_LABEL] ?? ''));
      await Promise.all(ours.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
      await admin((c) => c.query(`drop database if exists "${dbName}" with (force)`)).catch((err: unknown) => console.warn('drop database failed', err));
      await deleteRedisPrefix(redisPrefix).catch((err: unknown) => console.warn('redis cleanup failed', err));
      for (const d of dataDirs) await rm(d, { recursive: true, force: true });
    }, 120_000);

    const createdIds = new Set<string>();

    /** Polls the survivors every 50 ms from the kill on; the time until one leads (both it and the lease say so). */
    async function watchTakeover(killedAtMs: number): Promise<{ replica: Replica; ms: number; fencingToken: number | undefined }> {
      const replica = await waitFor(
        () => currentLeader(replicas),
        TAKEOVER_LIMIT_MS + 20_000,
        async () => JSON.stringify(await Promise.all(replicas.filter((r) => r.alive).map(leaderStatus))),
        50,
      );
      const ms = Date.now() - killedAtMs;
      return { replica, ms, fencingToken: (await leaderStatus(replica))?.fencingToken };
    }

    it('elects exactly one leader; an SSE stream on a follower sees the leader\'s phase changes; DELETE on a follower returns once the leader deleted', async () => {
      const leader = await waitFor(() => currentLeader(replicas), 15_000, async () => JSON.stringify(await Promise.all(replicas.map(leaderStatus))));
      const statuses = await Promise.all(replicas.map(leaderStatus));
      expect(statuses.filter((s) => s?.leader)).toHaveLength(1);
      expect(statuses.every((s) => s?.mode === 'lease' && s.holder?.replicaId === leader.id)).toBe(true);

      const [watcher, creator] = replicas.filter((r) => r !== leader) as [Replica, Replica];
      const stream = openEventStream(watcher);
      try {
        await stream.connected;
        const created = await call(creator, 'POST', '/api/v1/agents', agentBody('sse-watch'), { 'idempotency-key': 'sse-watch' });
        expect(created.status, created.text).toBe(201);
        const id = (JSON.parse(created.text) as AgentBody).id;
        createdIds.add(id);
        // PhaseChanged events are published by the controller, which runs only on the leader.
        await waitFor(
          async () => (stream.events.some((e) => e.objectId === id && e.reason === 'PhaseChanged' && e.data?.to === 'Running') ? true : undefined),
          60_000,
          async () => `events seen on ${watcher.id}: ${JSON.stringify(stream.events.filter((e) => e.objectId === id))}`,
        );
        const phaseEvents = stream.events.filter((e) => e.objectId === id && e.reason === 'PhaseChanged');
        // Each event once: fan-out through Redis must not duplicate.
        expect(new Set(phaseEvents.map((e) => e.data?.to)).size).toBe(phaseEvents.length);

        // Any replica serves logs: read them through one that does not lead (asked now, as
        // a replica that stalls may have stepped down since).
        const statusNow = await Promise.all(replicas.map(async (r) => ({ r, s: await leaderStatus(r) })));
        const follower = statusNow.find(({ s }) => s !== undefined && !s.leader)?.r;
        expect(follower, JSON.stringify(statusNow.map(({ r, s }) => ({ id: r.id, s })))).toBeDefined();
        const logs = await waitFor(
          async () => {
            const r = await call(follower!, 'GET', `/api/v1/agents/${id}/logs`);
            expect(r.status, r.text).toBe(200);
            return r.text.includes('hello from sse-watch') ? r.text : undefined;
          },
          15_000,
          async () => `logs through ${follower!.id}: ${(await call(follower!, 'GET', `/api/v1/agents/${id}/logs`)).text}`,
        );
        expect(logs).toBe('hello from sse-watch\n');

        const startedAt = Date.now();
        const deleted = await call(watcher, 'DELETE', `/api/v1/agents/${id}`);
        expect(deleted.status, deleted.text).toBe(200);
        expect(JSON.parse(deleted.text)).toMatchObject({ id, deleted: true });
        expect(Date.now() - startedAt).toBeLessThan(14_000);
      } finally {
        stream.close();
      }
    }, 120_000);

    it(
      'kill -9 of the leader during creates: a follower leads within 10 s; every acknowledged agent exists once, runs, and has one container',
      async () => {
        const leader = await waitFor(() => currentLeader(replicas), 15_000, async () => JSON.stringify(await Promise.all(replicas.map(leaderStatus))));
        const keys = Array.from({ length: AGENTS }, (_, i) => `ha-${i}`);
        const bodies = keys.map((_, i) => agentBody(`ha-${i}`));
        const acked = new Map<string, string>();
        const failures: string[] = [];
        let killedAt = 0;
        let takeover: ReturnType<typeof watchTakeover> | undefined;
        let rr = 0;
        let retriedAfterError = 0;
        const alive = (): Replica[] => replicas.filter((r) => r.alive);

        const createWithRetry = async (i: number): Promise<void> => {
          const key = keys[i]!;
          for (let attempt = 0; attempt < 20; attempt++) {
            const live = alive();
            const target = live[(rr++ + attempt) % live.length]!;
            try {
              const res = await call(target, 'POST', '/api/v1/agents', bodies[i], { 'idempotency-key': key });
              if (res.status === 201 || res.status === 200) {
                const id = (JSON.parse(res.text) as AgentBody).id;
                const before = acked.get(key);
                if (before !== undefined && before !== id) failures.push(`${key}: acknowledged as ${before} and then as ${id}`);
                acked.set(key, id);
                createdIds.add(id);
                if (killedAt === 0 && acked.size >= AGENTS / 3) {
                  killedAt = Date.now();
                  leader.alive = false;
                  leader.process.kill9();
                  takeover = watchTakeover(killedAt);
                }
                return;
              }
              if (res.status < 500) {
                failures.push(`${key}: ${res.status} ${res.text}`);
                return;
              }
            } catch {
              // Connection reset or refused: the replica died under us; retry elsewhere, same key.
              retriedAfterError++;
            }
            await sleep(100);
          }
          failures.push(`${key}: no replica acknowledged it`);
        };

        // Six at a time, round-robin over the replicas still alive.
        let next = 0;
        await Promise.all(
          Array.from({ length: 6 }, async () => {
            while (next < keys.length) await createWithRetry(next++);
          }),
        );
        expect(failures).toEqual([]);
        expect(killedAt).toBeGreaterThan(0);
        await leader.process.exited;

        const { replica: newLeader, ms: takeoverMs, fencingToken: takeoverToken } = await takeover!;
        console.info(`[ha] leader ${leader.id} killed after ${Math.ceil(AGENTS / 3)} acks; ${newLeader.id} leads ${takeoverMs} ms later (lease TTL ${LEASE_TTL_MS} ms); ${retriedAfterError} request(s) retried after a connection error`);
        expect(newLeader).not.toBe(leader);
        expect(takeoverMs).toBeLessThanOrEqual(TAKEOVER_LIMIT_MS);

        // Every acknowledged agent exists exactly once and runs.
        const ids = keys.map((k) => acked.get(k)!);
        expect(new Set(ids).size).toBe(AGENTS);
        const survivor = alive()[0]!;
        const agents = await waitFor(
          async () => {
            const items = (await listAgents(survivor)).filter((a) => a.name.startsWith('ha-'));
            return items.length === AGENTS && items.every((a) => a.status.phase === 'Running') ? items : undefined;
          },
          180_000,
          async () => `${phaseSummary(await listAgents(survivor))}\nnew leader output:\n${newLeader.process.output()}`,
        );
        expect(agents.map((a) => a.id).sort()).toEqual([...ids].sort());
        expect(new Set(agents.map((a) => a.name)).size).toBe(AGENTS);

        // Docker: exactly one container per agent, the one it records, running.
        const assertContainers = async (): Promise<void> => {
          const list = await docker.listContainers({ all: true, filters: { label: [AGENT_ID_LABEL] } });
          const byAgent = new Map<string, Docker.ContainerInfo[]>();
          for (const c of list) {
            const agentId = c.Labels[AGENT_ID_LABEL] ?? '';
            if (createdIds.has(agentId)) byAgent.set(agentId, [...(byAgent.get(agentId) ?? []), c]);
          }
          const current = new Map((await listAgents(survivor)).map((a) => [a.id, a]));
          for (const id of ids) {
            const cs = byAgent.get(id) ?? [];
            expect(cs.length, `containers of agent ${id}`).toBe(1);
            expect(cs[0]!.State).toBe('running');
            expect(cs[0]!.Id).toBe(current.get(id)?.status.containerId);
          }
          // Nothing else of this installation: the agent deleted in the first test left none.
          expect([...byAgent.keys()].sort()).toEqual([...ids].sort());
        };
        await assertContainers();
        // A few resyncs later (on the new leader): no late duplicate, nothing swept.
        await sleep(3_000);
        await assertContainers();

        // Still exactly one leader among the survivors, and the lease names it. (Normally the
        // one that took over; a leader that stalls past its renewal deadline steps down, so
        // a later term is allowed, but reported.)
        const statuses = await Promise.all(alive().map(leaderStatus));
        const leaders = statuses.filter((s) => s?.leader);
        expect(leaders, JSON.stringify(statuses)).toHaveLength(1);
        expect(statuses.every((s) => s?.holder?.replicaId === leaders[0]!.replicaId), JSON.stringify(statuses)).toBe(true);
        if (leaders[0]!.fencingToken !== takeoverToken) {
          console.warn(`[ha] leadership changed again after the takeover (token ${takeoverToken} -> ${leaders[0]!.fencingToken}):\n${alive().map((r) => `${r.id}:\n${r.process.output()}`).join('\n')}`);
        }
      },
      300_000,
    );

  });
}
