/**
 * FailedScheduling: when no node fits, the controller stores a Warning event whose message
 * counts the causes the kube-scheduler way ("0/3 nodes are available: 2 insufficient cpu,
 * 1 cordoned.") and whose data holds the same counts. The real platform (buildPlatform,
 * SQLite in a temp dir, scheduler, node pool) runs on three simulated 4-CPU nodes (a
 * SimulatedCluster, labelled as such): no Docker needed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventsPlatform, sleep, uniqueName, type EventJson } from './events-platform.js';

describe('FailedScheduling events (simulated nodes)', () => {
  let p: EventsPlatform;

  beforeAll(async () => {
    // Heartbeats fast, so a cordon or uncordon reaches the scheduler quickly.
    p = await EventsPlatform.start({ nodes: 'simulated', simulatedNodes: 3, env: { AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '100' } });
  });

  async function unschedulableAttempts(): Promise<number> {
    const text = await (await fetch(`${p.baseUrl}/metrics`)).text();
    return Number(/^agent_platform_scheduling_attempts_total\{result="unschedulable"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  }

  afterAll(async () => {
    await p?.close();
  });

  it('stores one event per distinct cause count, with the kube-style message, while the agent waits Pending', async () => {
    const failed = (events: EventJson[]): EventJson[] => events.filter((e) => e.reason === 'FailedScheduling');
    await p.expect(200, 'POST', '/api/v1/nodes/sim-00003/cordon');
    const stream = await p.openStream();
    try {
      // 6 CPUs: more than any 4-CPU node has, so every node fails the Fit filter or is cordoned.
      const big = await p.create({ name: uniqueName('big'), image: 'sim/sleeper', command: ['sleep', '3600'], resources: { cpu: '6', memory: '128Mi' } });
      const first = await p.waitForEvent(`?agent=${big.id}`, (e) => e.reason === 'FailedScheduling', 10_000);
      expect(first).toMatchObject({ objectKind: 'Agent', objectId: big.id, type: 'Warning', message: '0/3 nodes are available: 2 insufficient cpu, 1 cordoned.' });
      expect(first.data.reasons).toEqual({ 'insufficient cpu': 2, cordoned: 1 });
      expect(first.data.examinedNodes).toBe(3);
      // Not a phase change: the agent waits Pending with the same reason and message in its status.
      expect(first.data.from).toBeUndefined();
      const waiting = (await p.expect(200, 'GET', `/api/v1/agents/${big.id}`)).json;
      expect(waiting.status).toMatchObject({ phase: 'Pending', reason: 'Unschedulable', message: first.message });
      // Stored and streamed alike (same id).
      const streamed = await stream.waitFor((e) => e.objectId === big.id && e.reason === 'FailedScheduling', 5_000);
      expect(streamed.event_!.id).toBe(first.id);

      // Retries that find the same causes write nothing new (a waiting agent is retried on
      // every capacity change and at least every 5 s): wait for retries, counted by /metrics.
      const attemptsBefore = await unschedulableAttempts();
      const retryDeadline = Date.now() + 15_000;
      while ((await unschedulableAttempts()) < attemptsBefore + 1) {
        if (Date.now() > retryDeadline) throw new Error('the waiting agent was not retried within 15 s');
        await sleep(200);
      }
      expect(failed(await p.events(`?agent=${big.id}`))).toHaveLength(1);

      // New causes, a new event: with the cordon lifted, all three lack CPU.
      await p.expect(200, 'POST', '/api/v1/nodes/sim-00003/uncordon');
      const second = await p.waitForEvent(`?agent=${big.id}`, (e) => e.reason === 'FailedScheduling' && e.id !== first.id, 10_000);
      expect(second.message).toBe('0/3 nodes are available: 3 insufficient cpu.');
      expect(second.data.reasons).toEqual({ 'insufficient cpu': 3 });
      expect((await p.expect(200, 'GET', `/api/v1/agents/${big.id}`)).json.status).toMatchObject({ phase: 'Pending', reason: 'Unschedulable', message: second.message });
      expect(failed(await p.events(`?agent=${big.id}`)).map((e) => e.message)).toEqual([first.message, second.message]);
      // Nothing was scheduled.
      expect((await p.events(`?agent=${big.id}`)).map((e) => e.reason)).toEqual(['Created', 'FailedScheduling', 'FailedScheduling']);
      expect(await unschedulableAttempts()).toBeGreaterThanOrEqual(3);
    } finally {
      await stream.close();
    }
  }, 60_000);
});
