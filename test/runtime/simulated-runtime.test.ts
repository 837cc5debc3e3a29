import { describe, expect, it } from 'vitest';
import { NotFoundError, UnavailableError } from '../../src/domain/errors.js';
import { SimulatedCluster } from '../../src/runtime/simulated/simulated-cluster.js';
import type { LogLine, RuntimeEvent } from '../../src/runtime/runtime.js';
import { runtimeConformance, shellSpec, waitFor } from '../conformance/runtime-conformance.js';

const IMAGE = 'agent-platform/busybox:latest';

describe('SimulatedRuntime', () => {
  runtimeConformance('simulated', async () => {
    const cluster = new SimulatedCluster({ nodes: 3 });
    // The middle node: conformance must not depend on being node one.
    const runtime = cluster.runtimes()[1]!;
    return { runtime, image: IMAGE, cleanup: () => cluster.close() };
  });

  describe('simulation specifics', () => {
    let counter = 0;
    const newAgentId = (): string => `s${++counter}`;

    it('labels itself simulated and reports the node shape', async () => {
      const cluster = new SimulatedCluster({
        nodes: [
          { cpuMillicores: 4_000, memoryMiB: 8_192 },
          { cpuMillicores: 16_000, memoryMiB: 65_536, gpus: { count: 2, model: 'A100' } },
        ],
      });
      const [a, b] = cluster.runtimes();
      expect(a).toMatchObject({ driver: 'simulated', simulated: true, nodeId: 'sim-00001' });
      expect(b!.nodeId).toBe('sim-00002');
      expect(await a!.info()).toEqual({
        cpuMillicores: 4_000,
        memoryMiB: 8_192,
        os: 'linux',
        arch: 'amd64',
        runtimeVersion: 'simulated',
        isolationClasses: ['runc', 'gvisor'],
      });
      expect((await b!.info()).cpuMillicores).toBe(16_000);
      expect(b!.shape.gpus).toEqual({ count: 2, model: 'A100' });
      await cluster.close();
    });

    it('keeps nodes apart: a container on one node is invisible on another', async () => {
      const cluster = new SimulatedCluster({ nodes: 2 });
      const [a, b] = cluster.runtimes();
      const agentId = newAgentId();
      const id = await a!.create(shellSpec(agentId, IMAGE, 'sleep 30'));
      expect(await b!.inspect(id)).toBeUndefined();
      expect(await b!.list()).toEqual([]);
      // Same agent on the other node is a different container (rescheduling makes this happen).
      const other = await b!.create(shellSpec(agentId, IMAGE, 'sleep 30'));
      expect(other).not.toBe(id);
      expect((await a!.list()).map((c) => c.containerId)).toEqual([id]);
      await cluster.close();
    });

    it('finds containers by name as well as id, and a fresh view sees the same containers', async () => {
      const cluster = new SimulatedCluster({ nodes: 1 });
      const first = cluster.runtime('sim-00001');
      const agentId = newAgentId();
      const id = await first.create(shellSpec(agentId, IMAGE, 'sleep 30'));
      await first.start(`ap-${agentId}`);
      await first.close();
      const second = cluster.runtime('sim-00001');
      expect(await second.inspect(`ap-${agentId}`)).toMatchObject({ containerId: id, agentId, state: 'running' });
      await expect(second.start('ap-nobody')).rejects.toBeInstanceOf(NotFoundError);
      await cluster.close();
    });

    it('delivers events asynchronously, never inside the call that caused them', async () => {
      const cluster = new SimulatedCluster({ nodes: 1 });
      const [runtime] = cluster.runtimes();
      const events: RuntimeEvent[] = [];
      const abort = new AbortController();
      runtime!.watch((e) => events.push(e), abort.signal);
      const agentId = newAgentId();
      const id = await runtime!.create(shellSpec(agentId, IMAGE, 'exit 2'));
      await runtime!.start(id);
      expect(events).toEqual([]);
      await waitFor('die', () => events.find((e) => e.action === 'die'));
      expect(events.map((e) => e.action)).toEqual(['create', 'start', 'die']);
      expect(events.every((e) => e.agentId === agentId && e.containerId === id)).toBe(true);
      await runtime!.stop(id, 0);
      await runtime!.remove(id);
      await waitFor('destroy', () => events.find((e) => e.action === 'destroy'));
      abort.abort();
      await cluster.close();
    });

    describe('node down and up (a partition)', () => {
      it('rejects every call with UnavailableError while down, and shows the containers as they are after', async () => {
        const cluster = new SimulatedCluster({ nodes: 2 });
        const [a, b] = cluster.runtimes();
        const events: RuntimeEvent[] = [];
        const abort = new AbortController();
        a!.watch((e) => events.push(e), abort.signal);
        const long = await a!.create(shellSpec(newAgentId(), IMAGE, 'sleep 60'));
        const short = await a!.create(shellSpec(newAgentId(), IMAGE, 'sleep 0.3; exit 5'));
        await a!.start(long);
        await a!.start(short);
        await waitFor('start events', () => (events.filter((e) => e.action === 'start').length === 2 ? true : undefined));

        cluster.setNodeDown('sim-00001', true);
        expect(cluster.isNodeDown('sim-00001')).toBe(true);
        const calls: (() => Promise<unknown>)[] = [
          () => a!.ping(),
          () => a!.info(),
          () => a!.list(),
          () => a!.inspect(long),
          () => a!.create(shellSpec(newAgentId(), IMAGE, 'true')),
          () => a!.start(long),
          () => a!.stop(long, 0),
          () => a!.remove(long),
          async () => {
            for await (const _ of a!.logs(long, {})) void _;
          },
        ];
        for (const call of calls) {
          const error = await call().catch((err: unknown) => err);
          expect(error).toBeInstanceOf(UnavailableError);
          expect((error as UnavailableError).code).toBe('RUNTIME_UNAVAILABLE');
          expect((error as UnavailableError).details).toMatchObject({ nodeId: 'sim-00001', simulated: true });
        }
        // The other node is unaffected.
        await b!.ping();

        // The short run ends during the outage; its die event is lost with the partition.
        await new Promise((resolve) => setTimeout(resolve, 600));
        cluster.setNodeDown('sim-00001', false);
        expect(events.some((e) => e.action === 'die')).toBe(false);
        expect(await a!.inspect(long)).toMatchObject({ state: 'running' });
        expect(await a!.inspect(short)).toMatchObject({ state: 'exited', exitCode: 5 });

        // The watch survived the outage: new events arrive again.
        await a!.stop(long, 0);
        await waitFor('die after recovery', () => events.find((e) => e.action === 'die' && e.containerId === long));
        abort.abort();
        await cluster.close();
      });

      it('ends a follow with UnavailableError when the node goes down', async () => {
        const cluster = new SimulatedCluster({ nodes: 1 });
        const [runtime] = cluster.runtimes();
        const id = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'echo hello; sleep 60'));
        await runtime!.start(id);
        const seen: LogLine[] = [];
        const reading = (async () => {
          for await (const line of runtime!.logs(id, { follow: true })) seen.push(line);
        })();
        await waitFor('first line', () => (seen.length === 1 ? true : undefined));
        cluster.setNodeDown('sim-00001', true);
        await expect(reading).rejects.toBeInstanceOf(UnavailableError);
        expect(seen.map((l) => l.text)).toEqual(['hello']);
        await cluster.close();
      });
    });

    it('waits startLatencyMs in start, and an abort ends the wait', async () => {
      const cluster = new SimulatedCluster({ nodes: 1, startLatencyMs: 200 });
      const [runtime] = cluster.runtimes();
      const id = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'sleep 30'));
      const began = Date.now();
      await runtime!.start(id);
      expect(Date.now() - began).toBeGreaterThanOrEqual(190);
      expect((await runtime!.inspect(id))?.state).toBe('running');

      const other = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'sleep 30'));
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 50);
      const error = await runtime!.start(other, abort.signal).catch((err: unknown) => err);
      expect((error as Error).name).toBe('AbortError');
      expect((await runtime!.inspect(other))?.state).toBe('created');
      await cluster.close();
    });

    it('honours SIM_IGNORE_SIGTERM: stop takes the grace period and kills with 137', async () => {
      const cluster = new SimulatedCluster({ nodes: 1 });
      const [runtime] = cluster.runtimes();
      const stubborn = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'sleep 60', { env: { SIM_IGNORE_SIGTERM: 'true' } }));
      const polite = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'sleep 60'));
      await runtime!.start(stubborn);
      await runtime!.start(polite);
      let began = Date.now();
      await runtime!.stop(polite, 5_000);
      expect(Date.now() - began).toBeLessThan(100);
      expect(await runtime!.inspect(polite)).toMatchObject({ state: 'exited', exitCode: 143 });
      began = Date.now();
      await runtime!.stop(stubborn, 300);
      expect(Date.now() - began).toBeGreaterThanOrEqual(290);
      expect(await runtime!.inspect(stubborn)).toMatchObject({ state: 'exited', exitCode: 137 });
      await cluster.close();
    });

    it('simulates an OOM kill from SIM_OOM_AFTER_MS: oom then die, exit 137, oomKilled', async () => {
      const cluster = new SimulatedCluster({ nodes: 1 });
      const [runtime] = cluster.runtimes();
      const events: RuntimeEvent[] = [];
      const abort = new AbortController();
      runtime!.watch((e) => events.push(e), abort.signal);
      const id = await runtime!.create(shellSpec(newAgentId(), IMAGE, 'sleep 60', { env: { SIM_OOM_AFTER_MS: '50' } }));
      await runtime!.start(id);
      await waitFor('die', () => events.find((e) => e.action === 'die'));
      expect(events.map((e) => e.action)).toEqual(['create', 'start', 'oom', 'die']);
      expect(await runtime!.inspect(id)).toMatchObject({ state: 'exited', exitCode: 137, oomKilled: true });
      abort.abort();
      await cluster.close();
    });

    it('logs opaque commands as simulated, and keeps only the last logLinesPerContainer lines', async () => {
      const cluster = new SimulatedCluster({ nodes: 1, defaultRunMs: 100, logLinesPerContainer: 3 });
      const [runtime] = cluster.runtimes();
      const id = await runtime!.create({ ...shellSpec(newAgentId(), IMAGE, ''), command: ['python3', '-m', 'agent'], args: [] });
      const collect = async (): Promise<string[]> => {
        const out: string[] = [];
        for await (const line of runtime!.logs(id, {})) out.push(line.text);
        return out;
      };
      for (let run = 1; run <= 3; run++) {
        await runtime!.start(id);
        await waitFor(`run ${run} to end`, async () => ((await runtime!.inspect(id))?.state === 'exited' ? true : undefined));
      }
      expect(await collect()).toEqual(['exited with code 0', 'simulated agent started', 'exited with code 0']);
      await cluster.close();
    });
  });
});
