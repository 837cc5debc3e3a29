import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { PYTHON_IMAGE, TestPlatform, requireImage, sleep, uniqueName, type AgentJson } from './harness.js';

const hasDocker = await requireDocker();

describe.skipIf(!hasDocker)('agent lifecycle through the HTTP API (real dockerd)', () => {
  let p: TestPlatform;
  let busybox: string;

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
    p = await TestPlatform.start();
    await requireImage(p.docker, PYTHON_IMAGE);
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  });

  it('runs the README example to Succeeded, with logs, events and delete', async () => {
    const started = Date.now();
    const res = await p.request<AgentJson>('POST', '/api/v1/agents', {
      body: {
        name: uniqueName('hello'),
        image: PYTHON_IMAGE,
        command: ['python3', '-c', 'print("Hello Agent")'],
        resources: { cpu: '100m', memory: '128Mi' },
      },
    });
    expect(res.status, res.text).toBe(201);
    expect(res.json.id).toMatch(/^[a-z0-9]{8,40}$/);
    expect(res.json.status.phase).toBe('Pending');
    expect(res.headers.get('location')).toBe(`/api/v1/agents/${res.json.id}`);
    expect(res.json.spec.resources).toMatchObject({ cpu: '100m', memory: '128Mi', cpuMillicores: 100, memoryMiB: 128 });
    const id = res.json.id;

    const { agent, seen } = await p.waitForPhase(id, 'Succeeded');
    expect(agent.status.exitCode).toBe(0);
    expect(agent.status.reason).toBe('Completed');
    expect(agent.status.startedAt, 'startedAt recorded').toBeDefined();
    expect(agent.status.finishedAt).toBeDefined();
    expect(Date.parse(agent.status.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(agent.status.startedAt!));
    expect(Date.parse(agent.status.startedAt!)).toBeGreaterThanOrEqual(started - 1000);
    // Never a failure on the way.
    expect(seen.map((a) => a.status.phase)).not.toContain('Failed');

    const logs = await p.request('GET', `/api/v1/agents/${id}/logs`);
    expect(logs.status).toBe(200);
    expect(logs.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(logs.text).toBe('Hello Agent\n');

    const events = (await p.events(id)).map((e) => e.reason);
    for (const reason of ['Created', 'Scheduled', 'Started', 'Completed']) expect(events, `events: ${events.join(',')}`).toContain(reason);
    expect(events.indexOf('Created')).toBeLessThan(events.indexOf('Scheduled'));
    expect(events.indexOf('Scheduled')).toBeLessThan(events.lastIndexOf('Completed'));

    expect(await p.containersOf(id)).toHaveLength(1);
    const del = await p.request<{ id: string; deleted: boolean }>('DELETE', `/api/v1/agents/${id}`);
    expect(del.status, del.text).toBe(200);
    expect(del.json).toEqual({ id, deleted: true });
    const gone = await p.request<{ error: { code: string } }>('GET', `/api/v1/agents/${id}`);
    expect(gone.status).toBe(404);
    expect(gone.json.error.code).toBe('AGENT_NOT_FOUND');
    expect(await p.containersOf(id)).toHaveLength(0);
  }, 30_000);

  it('serves logs with tail, timestamps and since', async () => {
    const a = await p.create({ name: uniqueName('logs'), image: busybox, command: ['sh', '-c', 'echo one; echo two; echo three >&2; sleep 1.2; echo four'] });
    await p.waitForPhase(a.id, 'Succeeded');

    const all = await p.request('GET', `/api/v1/agents/${a.id}/logs`);
    expect(all.text.split('\n').filter(Boolean).sort()).toEqual(['four', 'one', 'three', 'two']);

    const tail = await p.request('GET', `/api/v1/agents/${a.id}/logs?tail=1`);
    expect(tail.status).toBe(200);
    expect(tail.text).toBe('four\n');

    const ts = await p.request('GET', `/api/v1/agents/${a.id}/logs?timestamps=true`);
    const lines = ts.text.split('\n').filter(Boolean);
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      const [time, ...rest] = line.split(' ');
      expect(Number.isNaN(Date.parse(time!)), line).toBe(false);
      expect(['one', 'two', 'three', 'four']).toContain(rest.join(' '));
    }
    // "four" came 1.2 s after the others: since its time minus a little keeps only it.
    const fourAt = Date.parse(lines.find((l) => l.endsWith(' four'))!.split(' ')[0]!);
    const since = await p.request('GET', `/api/v1/agents/${a.id}/logs?since=${encodeURIComponent(new Date(fourAt - 300).toISOString())}`);
    expect(since.status, since.text).toBe(200);
    expect(since.text).toBe('four\n');
    const relative = await p.request('GET', `/api/v1/agents/${a.id}/logs?since=1h`);
    expect(relative.text.split('\n').filter(Boolean)).toHaveLength(4);
  }, 30_000);

  it('follows the logs of a running agent and ends when the container ends', async () => {
    const a = await p.create({ name: uniqueName('follow'), image: busybox, command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done'] });
    await p.waitFor(a.id, (x) => x.status.phase === 'Running' || x.status.phase === 'Succeeded', 15_000, 'Running');
    const res = await fetch(`${p.baseUrl}/api/v1/agents/${a.id}/logs?follow=true`, { headers: { authorization: `Bearer ${p.token}` } });
    expect(res.status).toBe(200);
    const chunks: { at: number; text: string }[] = [];
    const decoder = new TextDecoder();
    const t0 = Date.now();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) chunks.push({ at: Date.now() - t0, text: decoder.decode(chunk) });
    const text = chunks.map((c) => c.text).join('');
    expect(text.split('\n').filter(Boolean)).toEqual(['line1', 'line2', 'line3', 'line4', 'line5']);
    // Streamed, not buffered: the last line arrived well after the first chunk.
    const firstAt = chunks[0]!.at;
    const lastAt = chunks.find((c) => c.text.includes('line5'))!.at;
    expect(lastAt - firstAt, JSON.stringify(chunks)).toBeGreaterThanOrEqual(250);
    // The stream ended because the container ended.
    const after = await p.waitForPhase(a.id, 'Succeeded', 5_000);
    expect(after.agent.status.exitCode).toBe(0);
  }, 30_000);

  it('stops a running agent within its grace period and starts it again; deletes from Running', async () => {
    const a = await p.create({ name: uniqueName('sleeper'), image: busybox, command: ['sleep', '300'] });
    const running = await p.waitForPhase(a.id, 'Running');
    const firstStartedAt = running.agent.status.startedAt!;

    const t0 = Date.now();
    const stop = await p.request<AgentJson>('POST', `/api/v1/agents/${a.id}/stop`);
    expect(stop.status, stop.text).toBe(200);
    expect(stop.json.desiredState).toBe('stopped');
    const stopped = await p.waitForPhase(a.id, 'Stopped', 10_000);
    // sleep ignores SIGTERM as PID 1: it is SIGKILLed after the 1 s grace.
    expect(Date.now() - t0).toBeLessThan(6_000);
    expect(stopped.agent.status.reason).toBe('Stopped');
    const [container] = await p.containersOf(a.id);
    expect(container?.State).toBe('exited');

    const start = await p.request<AgentJson>('POST', `/api/v1/agents/${a.id}/start`);
    expect(start.status, start.text).toBe(200);
    expect(start.json.desiredState).toBe('running');
    const again = await p.waitFor(a.id, (x) => x.status.phase === 'Running' && x.status.startedAt !== firstStartedAt, 15_000, 'Running again');
    expect(Date.parse(again.agent.status.startedAt!)).toBeGreaterThan(Date.parse(firstStartedAt));
    expect((await p.containersOf(a.id)).map((c) => c.State)).toEqual(['running']);

    const events = (await p.events(a.id)).map((e) => e.reason);
    expect(events).toEqual(expect.arrayContaining(['StopRequested', 'Stopped', 'StartRequested']));

    const del = await p.request('DELETE', `/api/v1/agents/${a.id}`);
    expect(del.status, del.text).toBe(200);
    expect((await p.request('GET', `/api/v1/agents/${a.id}`)).status).toBe(404);
    expect(await p.containersOf(a.id)).toHaveLength(0);
  }, 40_000);

  it('runs the container locked down with the spec limits', async () => {
    const a = await p.create({
      name: uniqueName('locked'),
      image: busybox,
      command: ['sleep', '300'],
      resources: { cpu: '250m', memory: '64Mi', limits: { cpu: '500m', memory: '96Mi' } },
    });
    const { agent } = await p.waitForPhase(a.id, 'Running');
    const info = await p.docker.getContainer(agent.status.containerId!).inspect();
    expect(info.Config.User).toBe('1000:1000');
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.SecurityOpt).toContain('no-new-privileges');
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.HostConfig.Privileged).toBe(false);
    expect(info.HostConfig.Memory).toBe(96 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).toBe(500_000_000);
    expect(info.HostConfig.PidsLimit).toBeGreaterThan(0);
    expect(info.Config.Labels?.['io.agent-platform.managed']).toBe('true');
    expect(info.Config.Labels?.['io.agent-platform.agent-id']).toBe(a.id);
    // And it holds from inside: not root, cannot write the root filesystem.
    const exec = await p.docker.getContainer(agent.status.containerId!).exec({ Cmd: ['sh', '-c', 'id -u; touch /x 2>/dev/null && echo wrote || echo readonly'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    let out = '';
    for await (const chunk of stream as AsyncIterable<Buffer>) out += chunk.toString('latin1');
    expect(out).toContain('1000');
    expect(out).toContain('readonly');
    expect(out).not.toContain('wrote');
    expect((await p.request('DELETE', `/api/v1/agents/${a.id}`)).status).toBe(200);
  }, 30_000);

  it('without limits.cpu the CPU request becomes the limit (NanoCpus and the CFS quota inside)', async () => {
    const a = await p.create({ name: uniqueName('cpu-req'), image: busybox, command: ['sleep', '300'], resources: { cpu: '300m', memory: '64Mi' } });
    expect(a.spec.resources).toMatchObject({ cpuMillicores: 300, cpuLimitMillicores: 300 });
    const { agent } = await p.waitForPhase(a.id, 'Running');
    const info = await p.docker.getContainer(agent.status.containerId!).inspect();
    expect(info.HostConfig.NanoCpus).toBe(300_000_000);
    // The same fallback holds for memory: the request is the limit.
    expect(info.HostConfig.Memory).toBe(64 * 1024 * 1024);
    // Enforced by the kernel, not only recorded: the container's own CFS quota is 0.3 of
    // a period (cgroup v2 "30000 100000"; v1 quota and period in two files).
    const exec = await p.docker.getContainer(agent.status.containerId!).exec({
      Cmd: ['sh', '-c', 'cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us'],
      AttachStdout: true,
      AttachStderr: true,
    });
    let out = '';
    for await (const chunk of (await exec.start({})) as AsyncIterable<Buffer>) out += chunk.toString('latin1');
    const [quota, period] = (out.match(/\d+/g) ?? []).map(Number);
    expect(period, out).toBeGreaterThan(0);
    expect(quota! / period!, out).toBeCloseTo(0.3, 5);
    expect((await p.request('DELETE', `/api/v1/agents/${a.id}`)).status).toBe(200);
  }, 30_000);

  it('workingDir from the API is the process working directory in the container', async () => {
    const a = await p.create({ name: uniqueName('workdir'), image: busybox, command: ['sh', '-c', 'pwd; echo here > rel.txt; cat /data/rel.txt'], workingDir: '/data' });
    expect(a.spec.workingDir).toBe('/data');
    const { agent } = await p.waitForPhase(a.id, 'Succeeded');
    expect(agent.status.exitCode).toBe(0);
    const info = await p.docker.getContainer(agent.status.containerId!).inspect();
    expect(info.Config.WorkingDir).toBe('/data');
    // pwd, and a relative path resolved against it.
    const logs = await p.request('GET', `/api/v1/agents/${a.id}/logs`);
    expect(logs.text).toBe('/data\nhere\n');
    expect((await p.request('DELETE', `/api/v1/agents/${a.id}`)).status).toBe(200);
  }, 30_000);

  it('Idempotency-Key: a replay returns the same agent; another body is a 409; parallel POSTs make one container', async () => {
    const key = `key-${uniqueName('k')}`;
    const body = { name: uniqueName('idem'), image: busybox, command: ['sleep', '300'] };
    const first = await p.request<AgentJson>('POST', '/api/v1/agents', { body, headers: { 'idempotency-key': key } });
    expect(first.status, first.text).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const second = await p.request<AgentJson>('POST', '/api/v1/agents', { body, headers: { 'idempotency-key': key } });
    expect(second.status, second.text).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.json.id).toBe(first.json.id);
    const other = await p.request<{ error: { code: string; message: string } }>('POST', '/api/v1/agents', {
      body: { ...body, command: ['sleep', '1'] },
      headers: { 'idempotency-key': key },
    });
    expect(other.status, other.text).toBe(409);
    expect(other.json.error.code).toBe('IDEMPOTENCY_KEY_REUSED');

    const parallelKey = `key-${uniqueName('p')}`;
    const parallelBody = { name: uniqueName('para'), image: busybox, command: ['sleep', '300'] };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => p.request<AgentJson>('POST', '/api/v1/agents', { body: parallelBody, headers: { 'idempotency-key': parallelKey } })),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201), results.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join('\n')).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(19);
    const ids = new Set(results.map((r) => r.json.id));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    await p.waitForPhase(id!, 'Running');
    await p.waitForPhase(first.json.id, 'Running');
    // Give a duplicate create a chance to show up before counting.
    await sleep(700);
    expect(await p.containersOf(id!)).toHaveLength(1);
    expect(await p.containersOf(first.json.id)).toHaveLength(1);
    const list = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?name=${parallelBody.name}`);
    expect(list.json.items).toHaveLength(1);
    await Promise.all([id!, first.json.id].map((x) => p.request('DELETE', `/api/v1/agents/${x}`)));
  }, 40_000);

  it('filters the list by phase and label and pages through it with nextCursor', async () => {
    const tag = uniqueName('run');
    const made = await Promise.all([
      p.create({ name: uniqueName('f-ok'), image: busybox, command: ['true'], labels: { suite: tag, kind: 'quick' } }),
      p.create({ name: uniqueName('f-ok'), image: busybox, command: ['true'], labels: { suite: tag, kind: 'quick' } }),
      p.create({ name: uniqueName('f-bad'), image: busybox, command: ['sh', '-c', 'exit 1'], labels: { suite: tag, kind: 'broken' } }),
      p.create({ name: uniqueName('f-ok'), image: busybox, command: ['true'], labels: { suite: tag, kind: 'quick' } }),
      p.create({ name: uniqueName('f-ok'), image: busybox, command: ['true'], labels: { suite: tag, kind: 'quick' } }),
    ]);
    await Promise.all(made.map((a) => p.waitFor(a.id, (x) => x.status.phase === 'Succeeded' || x.status.phase === 'Failed', 20_000, 'finished')));

    const byLabel = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?label=suite=${tag}`);
    expect(byLabel.status, byLabel.text).toBe(200);
    expect(byLabel.json.items.map((a) => a.id).sort()).toEqual(made.map((a) => a.id).sort());

    const broken = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?label=${encodeURIComponent(`suite=${tag},kind=broken`)}`);
    expect(broken.json.items.map((a) => a.id)).toEqual([made[2]!.id]);

    const failed = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?phase=Failed&label=suite=${tag}`);
    expect(failed.json.items.map((a) => a.id)).toEqual([made[2]!.id]);
    const both = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?phase=Failed,Succeeded&label=suite=${tag}`);
    expect(both.json.items).toHaveLength(5);
    const succeeded = await p.request<{ items: AgentJson[] }>('GET', `/api/v1/agents?phase=Succeeded&label=suite=${tag}`);
    expect(succeeded.json.items).toHaveLength(4);
    for (const a of succeeded.json.items) expect(a.status.phase).toBe('Succeeded');

    const walked: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await p.request<{ items: AgentJson[]; nextCursor?: string }>(
        'GET',
        `/api/v1/agents?limit=2&label=suite=${tag}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(page.status, page.text).toBe(200);
      expect(page.json.items.length).toBeLessThanOrEqual(2);
      walked.push(...page.json.items.map((a) => a.id));
      cursor = page.json.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(walked.sort()).toEqual(made.map((a) => a.id).sort());
  }, 40_000);
});
