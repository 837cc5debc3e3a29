import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { TestPlatform, sleep, uniqueName } from './harness.js';

const hasDocker = await requireDocker();

/** Control-plane restarts and shutdown: level-triggered reconcile converges afterwards. */
describe.skipIf(!hasDocker)('platform restart and shutdown (real dockerd)', () => {
  let busybox: string;
  const open: TestPlatform[] = [];

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(open.map((p) => p.close()));
  });

  it('a restarted platform picks up what happened while it was down, without duplicate containers', async () => {
    const first = await TestPlatform.start();
    open.push(first);
    const [job, sleeper, crasher] = await Promise.all([
      first.create({ name: uniqueName('job'), image: busybox, command: ['sh', '-c', 'sleep 1.5; echo done'] }),
      first.create({ name: uniqueName('keep'), image: busybox, command: ['sleep', '300'], restartPolicy: 'Always' }),
      first.create({ name: uniqueName('killed'), image: busybox, command: ['sleep', '300'], restartPolicy: 'Always' }),
    ]);
    const running = await Promise.all([job, sleeper, crasher].map((a) => first.waitForPhase(a.id, 'Running')));
    await first.close({ keep: true });
    open.splice(open.indexOf(first), 1);

    // While the control plane is down: the job finishes and a container is killed.
    await first.docker.getContainer(running[2]!.agent.status.containerId!).kill();
    await sleep(2_000);

    const second = await TestPlatform.start({ dataDir: first.dataDir, adopt: first.agentIds });
    open.push(second);
    const done = await second.waitForPhase(job.id, 'Succeeded', 10_000);
    expect(done.agent.status.exitCode).toBe(0);
    expect((await second.request('GET', `/api/v1/agents/${job.id}/logs`)).text).toBe('done\n');
    const back = await second.waitFor(crasher.id, (a) => a.status.phase === 'Running' && a.status.restarts === 1, 15_000, 'restarted once');
    expect(back.agent.status.containerId).toBe(running[2]!.agent.status.containerId);
    const kept = await second.get(sleeper.id);
    expect(kept.status).toMatchObject({ phase: 'Running', restarts: 0, containerId: running[1]!.agent.status.containerId, startedAt: running[1]!.agent.status.startedAt });
    for (const a of [job, sleeper, crasher]) expect(await second.containersOf(a.id), a.name).toHaveLength(1);
  }, 60_000);

  it('close() ends an open event stream (SSE) promptly', async () => {
    const p = await TestPlatform.start();
    open.push(p);
    const ended = new Promise<string>((resolve, reject) => {
      const req = http.get(`${p.baseUrl}/api/v1/events/stream`, { headers: { authorization: `Bearer ${p.token}` }, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('close', () => resolve(text));
      });
      req.on('error', reject);
    });
    const a = await p.create({ name: uniqueName('sse'), image: busybox, command: ['true'] });
    await p.waitForPhase(a.id, 'Succeeded');
    const t0 = Date.now();
    await p.platform.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    const text = await ended;
    expect(text).toContain(': connected');
    expect(text).toContain(a.id);
  }, 30_000);

  it('close() ends open log-follow streams instead of waiting for their containers', async () => {
    const p = await TestPlatform.start();
    open.push(p);
    const a = await p.create({ name: uniqueName('ticker'), image: busybox, command: ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'] });
    await p.waitForPhase(a.id, 'Running');
    const ended = new Promise<string>((resolve, reject) => {
      const req = http.get(`${p.baseUrl}/api/v1/agents/${a.id}/logs?follow=true`, { headers: { authorization: `Bearer ${p.token}` }, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('close', () => resolve(text));
      });
      req.on('error', reject);
    });
    await sleep(700);
    const t0 = Date.now();
    await p.platform.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await ended).toContain('tick\n');
    // The container itself keeps running: shutting the control plane down is not stopping agents.
    expect((await p.containersOf(a.id)).map((c) => c.State)).toEqual(['running']);
  }, 30_000);
});
