/**
 * Events on the real platform with real containers: buildPlatform in-process (SQLite in a
 * temp dir, controller, scheduler) with the local dockerd as node "local", busybox agents.
 * Every event here is recorded by the platform itself; the test only watches.
 *
 * Covers: the SSE stream delivers phase changes within one second; ?agent= filtering of
 * the stream; Last-Event-ID resumption (replay, then live, no duplicates); GET
 * /api/v1/events filters and limit; the event kinds a container produces (Scheduled with
 * per-node scores, Started, Completed, BackOff, OOMKilled); and the platform's JSON logs
 * (request id and tenant on request logs, agent id and node on controller logs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { EventsPlatform, sleep, uniqueName, type SseStream } from './events-platform.js';

const hasDocker = await requireDocker();

describe.skipIf(!hasDocker).sequential('events on real Docker', () => {
  let p: EventsPlatform;
  let image = '';
  let all: SseStream;

  beforeAll(async () => {
    image = await ensureBusyboxImage();
    p = await EventsPlatform.start({ nodes: 'docker', captureLogs: true });
    // Opened before any agent exists: it sees everything from here on.
    all = await p.openStream();
  });

  afterAll(async () => {
    await p?.close();
  });

  it('the SSE stream delivers every phase change of an agent within one second', async () => {
    const a = await p.create({ name: uniqueName('fast'), image, command: ['sh', '-c', 'sleep 1'] });
    // The controller records Completed, then announces the phase change.
    await all.waitFor((e) => e.objectId === a.id && e.reason === 'PhaseChanged' && e.data?.to === 'Succeeded', 30_000);
    const frames = all.frames.filter((f) => f.event_?.objectId === a.id);
    const phaseChanges = frames.filter((f) => f.event_!.reason === 'PhaseChanged');
    // Pending -> Starting -> Running -> Succeeded, each a frame of its own.
    expect(phaseChanges.map((f) => `${f.event_!.data.from}->${f.event_!.data.to}`)).toEqual(['Pending->Starting', 'Starting->Running', 'Running->Succeeded']);
    for (const f of [...phaseChanges, ...frames.filter((x) => ['Scheduled', 'Started', 'Completed'].includes(x.event_!.reason))]) {
      const latencyMs = f.receivedAt - Date.parse(f.event_!.time);
      expect(latencyMs, `${f.event_!.reason} ${JSON.stringify(f.event_!.data ?? '')}`).toBeGreaterThanOrEqual(0);
      expect(latencyMs, `${f.event_!.reason} ${JSON.stringify(f.event_!.data ?? '')}`).toBeLessThan(1000);
    }
    // Stored events carry their id as the SSE id (for Last-Event-ID); transient PhaseChanged ones carry none.
    for (const f of frames) {
      if (f.event_!.reason === 'PhaseChanged') expect(f.id).toBeUndefined();
      else expect(f.id).toBe(String(f.event_!.id));
      expect(f.event).toBe('agent');
    }
    // The status the API shows moved on no later than the frame said it did.
    expect((await p.expect(200, 'GET', `/api/v1/agents/${a.id}`)).json.status.phase).toBe('Succeeded');
  });

  it('the SSE stream measured from the status change: a Running agent is announced within one second of GET showing it', async () => {
    const stream = await p.openStream();
    try {
      const a = await p.create({ name: uniqueName('poll'), image, command: ['sh', '-c', 'sleep 30'] });
      // Poll the status as fast as the API answers; note the first moment it says Running.
      let runningSeenAt = 0;
      const deadline = Date.now() + 30_000;
      while (!runningSeenAt && Date.now() < deadline) {
        if ((await p.expect(200, 'GET', `/api/v1/agents/${a.id}`)).json.status.phase === 'Running') runningSeenAt = Date.now();
      }
      expect(runningSeenAt).toBeGreaterThan(0);
      const frame = await stream.waitFor((e) => e.objectId === a.id && e.reason === 'PhaseChanged' && e.data?.to === 'Running', 1_000);
      expect(frame.receivedAt - runningSeenAt).toBeLessThan(1000);
      await p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`);
    } finally {
      await stream.close();
    }
  });

  it('?agent= streams only that agent; an unfiltered stream sees both', async () => {
    const a = await p.create({ name: uniqueName('only'), image, command: ['true'] });
    const filtered = await p.openStream(`?agent=${a.id}`);
    try {
      const b = await p.create({ name: uniqueName('other'), image, command: ['true'] });
      // a was created before the stream opened: its later events still arrive live.
      await filtered.waitFor((e) => e.reason === 'Completed', 30_000);
      await all.waitFor((e) => e.objectId === b.id && e.reason === 'Completed', 30_000);
      await sleep(300);
      expect(filtered.events().length).toBeGreaterThan(0);
      expect(new Set(filtered.events().map((e) => e.objectId))).toEqual(new Set([a.id]));
      expect(all.events().some((e) => e.objectId === b.id)).toBe(true);
      // Unknown agent: a valid stream with nothing in it (no existence leak).
      const none = await p.openStream('?agent=doesnotexist0000');
      await sleep(300);
      expect(none.events()).toEqual([]);
      await none.close();
    } finally {
      await filtered.close();
    }
  });

  it('Last-Event-ID replays the stored events after that id, then continues live, without duplicates', async () => {
    const a = await p.create({ name: uniqueName('resume'), image, command: ['sh', '-c', 'sleep 60'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Started', 30_000);
    const stored = await p.events(`?agent=${a.id}`);
    const created = stored.find((e) => e.reason === 'Created')!;
    const expectedReplay = stored.filter((e) => e.id > created.id).map((e) => e.id);
    expect(expectedReplay.length).toBeGreaterThanOrEqual(2); // Scheduled, Started

    const resumed = await p.openStream(`?agent=${a.id}`, { 'last-event-id': String(created.id) });
    try {
      // Produce live events while the replay may still be running.
      await p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`);
      await resumed.waitFor((e) => e.reason === 'Stopped' || (e.reason === 'PhaseChanged' && e.data?.to === 'Stopped'), 30_000);
      await sleep(300);
      const ids = resumed.frames.filter((f) => f.id !== undefined).map((f) => Number(f.id));
      expect(ids.slice(0, expectedReplay.length)).toEqual(expectedReplay);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      // Everything stored after the id arrived: replay plus live, nothing missing.
      const after = (await p.events(`?agent=${a.id}`)).filter((e) => e.id > created.id).map((e) => e.id);
      expect(ids).toEqual(after);
      expect(after.length).toBeGreaterThan(expectedReplay.length);
      expect(ids).not.toContain(created.id);
      // The live part included the stop request made after the stream opened.
      expect(resumed.events().some((e) => e.reason === 'StopRequested')).toBe(true);
    } finally {
      await resumed.close();
    }
  });

  it('GET /api/v1/events filters by agent, node and since, and honours limit', async () => {
    const a = await p.create({ name: uniqueName('filt'), image, command: ['true'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Completed', 30_000);
    const everything = await p.events('');
    const mine = await p.events(`?agent=${a.id}`);
    expect(mine.length).toBeGreaterThanOrEqual(4); // Created, Scheduled, Started, Completed
    expect(mine.every((e) => e.objectKind === 'Agent' && e.objectId === a.id)).toBe(true);
    expect(mine.map((e) => e.reason)).toEqual(expect.arrayContaining(['Created', 'Scheduled', 'Started', 'Completed']));
    // Oldest first.
    expect(mine.map((e) => e.id)).toEqual([...mine.map((e) => e.id)].sort((x, y) => x - y));
    expect(everything.length).toBeGreaterThan(mine.length);

    // Node events belong to no tenant; the platform admin sees them by node and in the full list.
    const node = await p.events('?node=local');
    expect(node.length).toBeGreaterThan(0);
    expect(node.every((e) => e.objectKind === 'Node' && e.objectId === 'local')).toBe(true);
    expect(node.map((e) => e.reason)).toContain('NodeReady');
    expect(everything.some((e) => e.objectKind === 'Node')).toBe(true);
    expect(await p.events('?node=no-such-node')).toEqual([]);

    // since: an RFC 3339 time keeps exactly the events at or after it.
    const pivot = mine[Math.floor(mine.length / 2)]!;
    const sinceMine = await p.events(`?agent=${a.id}&since=${encodeURIComponent(pivot.time)}`);
    expect(sinceMine.map((e) => e.id)).toEqual(mine.filter((e) => Date.parse(e.time) >= Date.parse(pivot.time)).map((e) => e.id));
    expect(sinceMine.length).toBeLessThan(mine.length + 1);
    expect(sinceMine.map((e) => e.id)).toContain(pivot.id);
    // since as a duration; in the future: nothing.
    expect((await p.events(`?agent=${a.id}&since=1h`)).map((e) => e.id)).toEqual(mine.map((e) => e.id));
    expect(await p.events(`?agent=${a.id}&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).toEqual([]);
    expect((await p.request('GET', '/api/v1/events?since=yesterday')).status).toBe(400);

    // limit: the oldest N.
    const two = await p.events(`?agent=${a.id}&limit=2`);
    expect(two.map((e) => e.id)).toEqual(mine.slice(0, 2).map((e) => e.id));
    expect((await p.request('GET', '/api/v1/events?limit=0')).status).toBe(400);
    expect((await p.request('GET', '/api/v1/events?limit=5001')).status).toBe(400);
  });

  it('records scheduling decisions with per-node scores, starts, completions, restarts (BackOff) and OOM kills', async () => {
    const ok = await p.create({ name: uniqueName('done'), image, command: ['true'] });
    const crash = await p.create({ name: uniqueName('crash'), image, command: ['sh', '-c', 'exit 3'], restartPolicy: 'OnFailure' });
    const oom = await p.create({
      name: uniqueName('oom'),
      image,
      // A 64 MiB shell variable in a 32 MiB container.
      command: ['sh', '-c', 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo survived ${#x}'],
      resources: { cpu: '500m', memory: '32Mi' },
    });

    const scheduled = await p.waitForEvent(`?agent=${ok.id}`, (e) => e.reason === 'Scheduled', 30_000);
    expect(scheduled.type).toBe('Normal');
    expect(scheduled.message).toContain('local');
    expect(Array.isArray(scheduled.data.scores)).toBe(true);
    expect(scheduled.data.scores.length).toBeGreaterThan(0);
    expect(scheduled.data.scores[0]).toMatchObject({ nodeId: 'local', score: expect.any(Number), breakdown: expect.any(Object) });
    expect(scheduled.data.feasibleNodes).toBe(1);

    const completed = await p.waitForEvent(`?agent=${ok.id}`, (e) => e.reason === 'Completed', 30_000);
    expect(completed).toMatchObject({ type: 'Normal', message: 'exited with code 0' });
    expect((await p.events(`?agent=${ok.id}`)).map((e) => e.reason)).toEqual(expect.arrayContaining(['Created', 'Scheduled', 'Started', 'Completed']));

    const backoff = await p.waitForEvent(`?agent=${crash.id}`, (e) => e.reason === 'BackOff', 30_000);
    expect(backoff.type).toBe('Warning');
    expect(backoff.message).toMatch(/exited with code 3; restarting in \d+s \(restart 1\)/);

    const killed = await p.waitForEvent(`?agent=${oom.id}`, (e) => e.reason === 'OOMKilled', 30_000);
    expect(killed.type).toBe('Warning');
    expect(killed.message).toContain('32Mi');
    const oomAgent = (await p.expect(200, 'GET', `/api/v1/agents/${oom.id}`)).json;
    expect(oomAgent.status.exitCode).toBe(137);

    // The same events reached the live stream.
    for (const [id, reason] of [
      [ok.id, 'Scheduled'],
      [crash.id, 'BackOff'],
      [oom.id, 'OOMKilled'],
    ] as const) {
      await all.waitFor((e) => e.objectId === id && e.reason === reason, 5_000);
    }
    await p.expect(200, 'POST', `/api/v1/agents/${crash.id}/stop`);
  });

  it('platform logs are JSON lines: request logs carry reqId and tenant, controller logs carry agentId and node', async () => {
    const reqId = `events-test-${Date.now()}`;
    const whoami = (await p.expect(200, 'GET', '/api/v1/whoami')).json as { tenantId: string; subject: string };
    const a = await p.create({ name: uniqueName('logged'), image, command: ['true'] }, { 'x-request-id': reqId });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Completed', 30_000);
    await sleep(200);
    // Every line is one JSON object with a level and a time.
    const lines = p.logs();
    expect(lines.length).toBe(p.logLines.length);
    for (const l of lines) {
      expect(typeof l.level).toBe('number');
      expect(typeof l.time).toBe('number');
    }
    const request = lines.find((l) => l.msg === 'request' && l.reqId === reqId);
    expect(request, 'request log line with the given x-request-id').toBeDefined();
    expect(request).toMatchObject({ method: 'POST', url: '/api/v1/agents', status: 201, tenant: whoami.tenantId, subject: whoami.subject, service: 'agent-platform' });
    // A generated request id when none is given; an unauthenticated request logs no tenant.
    const anon = await p.request('GET', '/api/v1/agents', { token: 'wrong-token-xxxxxxxxxxxx' });
    expect(anon.status).toBe(401);
    await sleep(100);
    const anonLine = p.logs().find((l) => l.msg === 'request' && l.reqId === anon.headers.get('x-request-id'));
    expect(anonLine).toMatchObject({ status: 401 });
    expect(anonLine!.reqId).toMatch(/^[0-9a-f-]{36}$/);
    expect(anonLine!.tenant).toBeUndefined();

    const running = lines.find((l) => l.msg === 'agent running' && l.agentId === a.id);
    expect(running, 'controller "agent running" line').toBeDefined();
    expect(running).toMatchObject({ agentId: a.id, node: 'local', component: 'agent-controller', containerId: expect.any(String) });
  });
});

