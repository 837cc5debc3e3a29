/**
 * "Every state change is an event": the live PhaseChanged announcements are not stored, so
 * each phase change must have a stored event written in the same transaction that names it
 * (data.from, data.to). A real Docker agent (busybox, buildPlatform in-process with SQLite)
 * goes through start, running, stop, start again, exit, restart (OnFailure back-off), stop
 * and delete; every phase change the live stream showed is matched, in order, by a stored
 * event. Then the platform's own /metrics, after these reconciles, shows reconcile
 * durations and a sane work-queue depth.
 *
 * Needs Docker; fails when CI=true and Docker is missing, skips otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { EventsPlatform, uniqueName, type EventJson, type SseStream } from './events-platform.js';

const hasDocker = await requireDocker();

const transition = (e: EventJson): string => `${e.data.from}->${e.data.to}`;

describe.skipIf(!hasDocker).sequential('stored events name every phase change (real Docker)', () => {
  let p: EventsPlatform;
  let image = '';
  let all: SseStream;

  beforeAll(async () => {
    image = await ensureBusyboxImage();
    p = await EventsPlatform.start({ nodes: 'docker' });
    // Opened before the agent exists, so it sees its first phase change too.
    all = await p.openStream();
  });

  afterAll(async () => {
    await p?.close();
  });

  it('start, stop, start, exit, restart, stop, delete: each live phase change has its stored event', async () => {
    // Runs 6 s, then fails: long enough to be stopped while Running, then restarted by OnFailure.
    const a = await p.create({ name: uniqueName('life'), image, command: ['sh', '-c', 'sleep 6; exit 3'], restartPolicy: 'OnFailure' });

    await p.waitForPhase(a.id, 'Running');
    await p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`);
    await p.waitForPhase(a.id, 'Stopped');
    await p.expect(200, 'POST', `/api/v1/agents/${a.id}/start`);
    // Running again, then the exit 3 after 6 s: Pending (CrashLoopBackOff), and Running again.
    const backoff = await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'BackOff', 40_000);
    const restarted = await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Started' && e.id > backoff.id, 30_000);
    expect(restarted.data).toMatchObject({ from: 'Starting', to: 'Running' });
    await p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`);
    await p.waitForPhase(a.id, 'Stopped');
    const stored = await p.events(`?agent=${a.id}`);
    const deleted = await p.request('DELETE', `/api/v1/agents/${a.id}`);
    expect([200, 202], deleted.text).toContain(deleted.status);
    await all.waitFor((e) => e.objectId === a.id && e.reason === 'Deleted', 30_000);

    const live = all.events().filter((e) => e.objectId === a.id && e.reason === 'PhaseChanged').map(transition);
    const named = (await p.platform.store.listEvents({ objectId: a.id })).filter((e) => (e.data as { from?: string } | undefined)?.from !== undefined);
    const storedTransitions = named.map((e) => `${(e.data as { from: string }).from}->${(e.data as { to: string }).to}`);
    // The path this agent took, every step of it announced live.
    expect(live).toEqual(
      expect.arrayContaining(['Pending->Starting', 'Starting->Running', 'Running->Stopping', 'Stopping->Stopped', 'Stopped->Pending', 'Running->Pending', 'Stopped->Deleting']),
    );
    // A restart leaves Pending for Starting once per start: after create, after the start request, after the back-off.
    expect(live.filter((t) => t === 'Pending->Starting').length).toBeGreaterThanOrEqual(3);
    // One stored event per live phase change, in the same order: none missing, none extra.
    expect(storedTransitions).toEqual(live);
    // Each names the change with a reason that says why (not a generic one).
    const reasonOf = new Map<string, Set<string>>();
    for (const e of named) reasonOf.set(transition(e as unknown as EventJson), (reasonOf.get(transition(e as unknown as EventJson)) ?? new Set()).add(e.reason));
    expect([...reasonOf.get('Stopped->Pending')!]).toEqual(['StartRequested']);
    expect([...reasonOf.get('Running->Pending')!]).toEqual(['BackOff']);
    expect([...reasonOf.get('Running->Stopping')!]).toEqual(['Stopping']);
    expect([...reasonOf.get('Stopping->Stopped')!]).toEqual(['Stopped']);
    expect([...reasonOf.get('Stopped->Deleting')!]).toEqual(['DeleteRequested']);
    expect([...reasonOf.get('Pending->Starting')!].sort()).toEqual(['ContainerStarting', 'Scheduled']);
    // The events listed by the API carry the same data as the store (what clients see).
    expect(stored.filter((e) => e.data?.from !== undefined).map(transition)).toEqual(storedTransitions.slice(0, -1));
    expect(stored.some((e) => e.reason === 'PhaseChanged')).toBe(false);
  }, 120_000);

  it('after those reconciles /metrics shows reconcile durations and a sane work-queue depth', async () => {
    const text = await (await fetch(`${p.baseUrl}/metrics`)).text();
    const value = (series: string): number | undefined => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const successes = value('agent_platform_reconcile_duration_seconds_count{result="success"}');
    // create, schedule, start, stop, start, restart, stop, delete: well over 8 reconciles.
    expect(successes).toBeGreaterThanOrEqual(8);
    const sum = value('agent_platform_reconcile_duration_seconds_sum{result="success"}')!;
    expect(sum).toBeGreaterThan(0);
    // A reconcile that created or started a container took milliseconds at least, never minutes.
    expect(sum / successes!).toBeLessThan(30);
    expect(value('agent_platform_reconcile_duration_seconds_bucket{le="+Inf",result="success"}')).toBe(successes);
    expect(text).toMatch(/^# TYPE agent_platform_workqueue_depth gauge$/m);
    const depth = value('agent_platform_workqueue_depth');
    expect(depth).toBeDefined();
    expect(Number.isInteger(depth)).toBe(true);
    // Nothing is left to do but the periodic resync's keys: one agent at most (it was deleted).
    expect(depth).toBeGreaterThanOrEqual(0);
    expect(depth).toBeLessThanOrEqual(2);
    expect(depth).toBe(p.platform.bus.depth());
  }, 20_000);
});
