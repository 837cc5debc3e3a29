import { afterAll, beforeAll, describe, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { PYTHON_IMAGE, TestPlatform, requireImage, uniqueName, type AgentJson } from './harness.js';

const hasDocker = await requireDocker();

/**
 * Failure modes through the API against the real dockerd. The tests are independent
 * and mostly wait on containers, so they run concurrently (each asserts with its own
 * `expect` from the test context).
 */
describe.skipIf(!hasDocker).concurrent('agent failures (real dockerd)', () => {
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

  it('a memory hog over its limit ends Failed with OOMKilled (exit 137)', async ({ expect }) => {
    const a = await p.create({
      name: uniqueName('oom'),
      image: PYTHON_IMAGE,
      command: ['python3', '-c', 'b = bytearray(200 * 1024 * 1024); print("survived")'],
      resources: { cpu: '500m', memory: '32Mi' },
    });
    const { agent } = await p.waitFor(a.id, (x) => x.status.phase === 'Failed' || x.status.phase === 'Succeeded', 25_000, 'finished');
    expect(agent.status.phase).toBe('Failed');
    expect(agent.status.reason).toBe('OOMKilled');
    expect(agent.status.exitCode).toBe(137);
    expect(agent.status.message).toContain('32Mi');
    const events = await p.events(a.id);
    expect(events.find((e) => e.reason === 'OOMKilled')?.type).toBe('Warning');
    expect((await p.request('GET', `/api/v1/agents/${a.id}/logs`)).text).not.toContain('survived');
  }, 30_000);

  it('OnFailure restarts a crashing agent with growing backoff (CrashLoopBackOff)', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('crash'), image: busybox, command: ['sh', '-c', 'exit 3'], restartPolicy: 'OnFailure' });
    // One observation per restart count while it waits in back-off.
    const backoffs = new Map<number, AgentJson>();
    await p.waitFor(
      a.id,
      (x) => {
        if (x.status.phase === 'Pending' && x.status.reason === 'CrashLoopBackOff' && !backoffs.has(x.status.restarts)) backoffs.set(x.status.restarts, x);
        return backoffs.has(3);
      },
      25_000,
      'restart 3 in back-off',
    );
    expect([...backoffs.keys()].sort()).toEqual([1, 2, 3]);
    const delays: number[] = [];
    for (const n of [1, 2, 3]) {
      const s = backoffs.get(n)!.status;
      expect(s.exitCode).toBe(3);
      expect(s.message).toContain('exited with code 3');
      expect(s.nextAttemptAt).toBeDefined();
      expect(s.finishedAt).toBeDefined();
      delays.push(Date.parse(s.nextAttemptAt!) - Date.parse(s.finishedAt!));
    }
    // 1 s, 2 s, 4 s measured from the exit; generous for a slow machine.
    const expected = [1_000, 2_000, 4_000];
    delays.forEach((d, i) => {
      expect(d, `delays ${delays.join(', ')}`).toBeGreaterThanOrEqual(expected[i]! - 100);
      expect(d, `delays ${delays.join(', ')}`).toBeLessThan(expected[i]! + 1_500);
    });
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    expect(delays[2]!).toBeGreaterThan(delays[1]!);
    // The waits are honoured: restart n+1 happens no earlier than nextAttemptAt of n.
    for (const n of [1, 2]) {
      const next = backoffs.get(n + 1)!.status;
      expect(Date.parse(next.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(backoffs.get(n)!.status.nextAttemptAt!) - 50);
    }
    const events = await p.events(a.id);
    expect(events.filter((e) => e.reason === 'BackOff').length).toBeGreaterThanOrEqual(3);
    expect(events.find((e) => e.reason === 'BackOff')?.type).toBe('Warning');
    // Restarts reuse the one container.
    expect(await p.containersOf(a.id)).toHaveLength(1);
  }, 30_000);

  it('Never: a crash ends Failed with exit code 3 and reason Error, no restart', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('never'), image: busybox, command: ['sh', '-c', 'echo bye; exit 3'], restartPolicy: 'Never' });
    const { agent } = await p.waitFor(a.id, (x) => x.status.phase === 'Failed' || x.status.phase === 'Succeeded', 20_000, 'finished');
    expect(agent.status).toMatchObject({ phase: 'Failed', exitCode: 3, reason: 'Error', restarts: 0 });
    expect(agent.status.message).toContain('exited with code 3');
    const later = await new Promise<AgentJson>((resolve, reject) => setTimeout(() => p.get(a.id).then(resolve, reject), 1_500));
    expect(later.status).toMatchObject({ phase: 'Failed', restarts: 0 });
  }, 30_000);

  it('Always: an agent that exits 0 is restarted', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('always'), image: busybox, command: ['true'], restartPolicy: 'Always' });
    const { seen } = await p.waitFor(a.id, (x) => x.status.restarts >= 2, 20_000, 'two restarts');
    expect(seen.map((x) => x.status.phase)).not.toContain('Succeeded');
    const waiting = seen.find((x) => x.status.reason === 'CrashLoopBackOff');
    expect(waiting?.status.exitCode).toBe(0);
  }, 30_000);

  it('a missing image fails fast with ImageNotFound and a clear message', async ({ expect }) => {
    const t0 = Date.now();
    const a = await p.create({ name: uniqueName('noimage'), image: 'agent-platform/does-not-exist:nope', command: ['true'] });
    const { agent } = await p.waitFor(a.id, (x) => x.status.phase === 'Failed', 10_000, 'Failed');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(agent.status.reason).toBe('ImageNotFound');
    expect(agent.status.message).toContain('agent-platform/does-not-exist:nope');
    expect(agent.status.message).toMatch(/not found/i);
    expect((await p.events(a.id)).map((e) => e.reason)).toContain('ImageNotFound');
    expect(await p.containersOf(a.id)).toHaveLength(0);
    // No container, so no logs: an empty answer, not an error (follow included).
    for (const q of ['', '?follow=true']) {
      const logs = await p.request('GET', `/api/v1/agents/${a.id}/logs${q}`);
      expect(logs.status, `logs${q}: ${logs.text}`).toBe(200);
      expect(logs.text).toBe('');
    }
  }, 30_000);

  it('a command that cannot start fails fast with StartError naming the cause', async ({ expect }) => {
    const t0 = Date.now();
    const a = await p.create({ name: uniqueName('badexe'), image: busybox, command: ['/nonexistent-binary'] });
    const { agent } = await p.waitFor(a.id, (x) => x.status.phase === 'Failed' || x.status.phase === 'Succeeded', 10_000, 'Failed');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(agent.status.reason).toBe('StartError');
    expect(agent.status.message).toContain('/nonexistent-binary');
    expect((await p.events(a.id)).find((e) => e.reason === 'StartError')?.type).toBe('Warning');
  }, 30_000);

  it('docker kill from outside fails a Never agent (137, Error)', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('kill-never'), image: busybox, command: ['sleep', '300'], restartPolicy: 'Never' });
    const { agent } = await p.waitForPhase(a.id, 'Running');
    await p.docker.getContainer(agent.status.containerId!).kill();
    const failed = await p.waitFor(a.id, (x) => x.status.phase !== 'Running', 10_000, 'not Running');
    expect(failed.agent.status).toMatchObject({ phase: 'Failed', exitCode: 137, reason: 'Error', restarts: 0 });
  }, 30_000);

  it('docker kill from outside restarts an Always agent', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('kill-always'), image: busybox, command: ['sleep', '300'], restartPolicy: 'Always' });
    const { agent } = await p.waitForPhase(a.id, 'Running');
    await p.docker.getContainer(agent.status.containerId!).kill();
    const back = await p.waitFor(a.id, (x) => x.status.phase === 'Running' && x.status.restarts >= 1, 15_000, 'Running after restart');
    expect(back.seen.some((x) => x.status.reason === 'CrashLoopBackOff')).toBe(true);
    expect(back.agent.status.containerId).toBe(agent.status.containerId);
    const [c] = await p.containersOf(a.id);
    expect(c?.State).toBe('running');
  }, 30_000);

  it('docker rm -f from outside recreates the container of an Always agent', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('rm-always'), image: busybox, command: ['sleep', '300'], restartPolicy: 'Always' });
    const { agent } = await p.waitForPhase(a.id, 'Running');
    await p.docker.getContainer(agent.status.containerId!).remove({ force: true });
    const back = await p.waitFor(a.id, (x) => x.status.phase === 'Running' && x.status.restarts >= 1, 15_000, 'Running in a new container');
    expect(back.agent.status.containerId).toBeDefined();
    expect(back.agent.status.containerId).not.toBe(agent.status.containerId);
    const containers = await p.containersOf(a.id);
    expect(containers.map((c) => [c.Id, c.State])).toEqual([[back.agent.status.containerId, 'running']]);
    expect((await p.events(a.id)).map((e) => e.reason)).toContain('BackOff');
  }, 30_000);

  it('timeoutSeconds stops a long runner: Failed, DeadlineExceeded', async ({ expect }) => {
    const a = await p.create({ name: uniqueName('deadline'), image: busybox, command: ['sleep', '300'], timeoutSeconds: 2 });
    const running = await p.waitForPhase(a.id, 'Running');
    const { agent } = await p.waitFor(a.id, (x) => x.status.phase !== 'Running', 10_000, 'deadline');
    expect(agent.status.phase).toBe('Failed');
    expect(agent.status.reason).toBe('DeadlineExceeded');
    const ranMs = Date.parse(agent.status.finishedAt!) - Date.parse(running.agent.status.startedAt!);
    expect(ranMs).toBeGreaterThanOrEqual(1_900);
    expect(ranMs).toBeLessThan(5_000);
    // The container was actually stopped.
    const stoppedBy = Date.now() + 5_000;
    let state = '';
    while (Date.now() < stoppedBy) {
      state = (await p.containersOf(a.id))[0]?.State ?? 'missing';
      if (state !== 'running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(state).toBe('exited');
  }, 30_000);
});
