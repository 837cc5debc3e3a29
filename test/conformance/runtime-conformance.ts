import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait-for.js';
export { waitFor };
import {
  ImageNotFoundError,
  type ContainerSpec,
  type LogLine,
  type LogOptions,
  type ObservedContainer,
  type Runtime,
  type RuntimeEvent,
} from '../../src/runtime/runtime.js';

/** What an adapter's test file hands the suite. */
export interface RuntimeConformanceContext {
  runtime: Runtime;
  /** An image with a POSIX `sh`, `echo`, `sleep` (busybox is enough). */
  image: string;
  cleanup(): Promise<void>;
  /** Where the adapter differs from Docker by nature; each flag defaults to Docker's behaviour. */
  capabilities?: RuntimeCapabilities;
}

export interface RuntimeCapabilities {
  /**
   * false: a missing image is found only after start (Kubernetes: by the kubelet). The
   * suite then expects create and start to succeed and inspect() to report state
   * "created" with an `error` that starts with "ImageNotFound" and names the image.
   * @default true
   */
  imageCheckedAtCreate?: boolean;
  /**
   * false: starting an exited container replaces it (Kubernetes: a new Pod), so only
   * the latest run's logs remain.
   * @default true
   */
  logsKeptAcrossRestarts?: boolean;
}

const TEST_TIMEOUT_MS = 30_000;

/** A spec with small, valid resources running `sh -c script`. */
export function shellSpec(agentId: string, image: string, script: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    agentId,
    tenantId: 'conformance',
    name: agentId,
    image,
    command: ['sh', '-c'],
    args: [script],
    env: {},
    cpuLimitMillicores: 500,
    cpuRequestMillicores: 100,
    memoryLimitMiB: 64,
    pidsLimit: 64,
    tmpSizeMiB: 16,
    dataSizeMiB: 16,
    gpuDeviceIds: [],
    labels: {},
    ...overrides,
  };
}

async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

/**
 * The behaviour every Runtime adapter must show. Each run uses its own agent-id prefix
 * and removes every container it created. Containers run `sh -c` with busybox
 * commands only, so the suite is portable across runtimes.
 */
export function runtimeConformance(name: string, make: () => Promise<RuntimeConformanceContext>): void {
  describe(`Runtime conformance: ${name}`, () => {
    const prefix = `c${randomBytes(4).toString('hex')}`;
    let counter = 0;
    const newAgentId = (): string => `${prefix}-${++counter}`;

    let ctx: RuntimeConformanceContext;
    let runtime: Runtime;
    const events: RuntimeEvent[] = [];
    const watchAbort = new AbortController();

    const spec = (agentId: string, script: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec =>
      shellSpec(agentId, ctx.image, script, overrides);

    const createAndStart = async (s: ContainerSpec): Promise<string> => {
      const id = await runtime.create(s);
      await runtime.start(id);
      return id;
    };

    const waitForState = (id: string, state: ObservedContainer['state'], timeoutMs?: number): Promise<ObservedContainer> =>
      waitFor(
        `container ${id} to be ${state}`,
        async () => {
          const observed = await runtime.inspect(id);
          return observed?.state === state ? observed : undefined;
        },
        timeoutMs,
      );

    const waitForEvent = (containerId: string, action: RuntimeEvent['action'], timeoutMs?: number): Promise<RuntimeEvent> =>
      waitFor(`${action} event for ${containerId}`, () => events.find((e) => e.containerId === containerId && e.action === action), timeoutMs);

    beforeAll(async () => {
      ctx = await make();
      runtime = ctx.runtime;
      runtime.watch((event) => events.push(event), watchAbort.signal);
    }, 120_000);

    afterAll(async () => {
      watchAbort.abort();
      if (runtime) {
        const mine = (await runtime.list()).filter((c) => c.agentId.startsWith(`${prefix}-`));
        await Promise.all(mine.map((c) => runtime.remove(c.containerId)));
        expect((await runtime.list()).filter((c) => c.agentId.startsWith(`${prefix}-`))).toEqual([]);
      }
      await ctx?.cleanup();
    }, 60_000);

    it('answers ping and reports node info', async () => {
      await runtime.ping();
      const info = await runtime.info();
      expect(info.cpuMillicores).toBeGreaterThan(0);
      expect(info.cpuMillicores % 1).toBe(0);
      expect(info.memoryMiB).toBeGreaterThan(0);
      expect(info.runtimeVersion).not.toBe('');
      expect(info.isolationClasses.length).toBeGreaterThan(0);
    });

    it('creates, starts and observes a container through inspect and events', async () => {
      const agentId = newAgentId();
      const before = Date.now();
      const id = await runtime.create(spec(agentId, 'echo started; sleep 2'));
      const created = await runtime.inspect(id);
      expect(created).toMatchObject({ containerId: id, agentId, state: 'created', oomKilled: false });

      await runtime.start(id);
      // Starting a running container is a no-op.
      await runtime.start(id);
      const running = await runtime.inspect(id);
      expect(running).toMatchObject({ containerId: id, agentId, state: 'running', exitCode: undefined });
      expect(running!.startedAt).toBeGreaterThanOrEqual(before - 2_000);

      const start = await waitForEvent(id, 'start');
      expect(start.agentId).toBe(agentId);
      expect(start.time).toBeGreaterThanOrEqual(before - 2_000);
      const die = await waitForEvent(id, 'die');
      expect(die.agentId).toBe(agentId);
      expect(die.time).toBeGreaterThanOrEqual(start.time);

      const exited = await waitForState(id, 'exited');
      expect(exited.exitCode).toBe(0);
      expect(exited.oomKilled).toBe(false);
      expect(exited.finishedAt).toBeGreaterThanOrEqual(exited.startedAt!);
    }, TEST_TIMEOUT_MS);

    it('records a non-zero exit code in inspect and list', async () => {
      const agentId = newAgentId();
      const id = await createAndStart(spec(agentId, 'exit 3'));
      const exited = await waitForState(id, 'exited');
      expect(exited.exitCode).toBe(3);
      expect(exited.oomKilled).toBe(false);
      const listed = (await runtime.list()).find((c) => c.containerId === id);
      expect(listed).toMatchObject({ agentId, state: 'exited', exitCode: 3 });
    }, TEST_TIMEOUT_MS);

    it('creates idempotently by agent id, also when two creates race', async () => {
      const agentId = newAgentId();
      const s = spec(agentId, 'sleep 30');
      const first = await runtime.create(s);
      const second = await runtime.create(s);
      expect(second).toBe(first);
      const raced = newAgentId();
      const [a, b] = await Promise.all([runtime.create(spec(raced, 'sleep 30')), runtime.create(spec(raced, 'sleep 30'))]);
      expect(a).toBe(b);
      const listed = await runtime.list();
      expect(listed.filter((c) => c.agentId === agentId).map((c) => c.containerId)).toEqual([first]);
      expect(listed.filter((c) => c.agentId === raced)).toHaveLength(1);
    }, TEST_TIMEOUT_MS);

    it('throws ImageNotFoundError at once for a missing image, without creating anything', async () => {
      const agentId = newAgentId();
      const image = `agent-platform/does-not-exist-${prefix}:latest`;
      if (ctx.capabilities?.imageCheckedAtCreate === false) {
        const id = await createAndStart(spec(agentId, 'true', { image }));
        const failed = await waitFor('an ImageNotFound error in inspect', async () => {
          const observed = await runtime.inspect(id);
          return observed?.error !== undefined ? observed : undefined;
        });
        expect(failed.state).toBe('created');
        expect(failed.error).toMatch(/^ImageNotFound/);
        expect(failed.error).toContain(image);
        return;
      }
      const started = Date.now();
      const error = await runtime.create(spec(agentId, 'true', { image })).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ImageNotFoundError);
      expect((error as ImageNotFoundError).image).toBe(image);
      // Nothing is pulled: a pull attempt without a registry would take far longer.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect((await runtime.list()).filter((c) => c.agentId === agentId)).toEqual([]);
    }, TEST_TIMEOUT_MS);

    it('stops a running container within the grace period; stopping again is a no-op', async () => {
      const agentId = newAgentId();
      const id = await createAndStart(spec(agentId, 'sleep 60'));
      await waitForState(id, 'running');
      const started = Date.now();
      await runtime.stop(id, 1_000);
      expect(Date.now() - started).toBeLessThan(10_000);
      const stopped = await runtime.inspect(id);
      expect(stopped?.state).toBe('exited');
      expect(stopped?.exitCode).toEqual(expect.any(Number));
      expect(stopped?.exitCode).not.toBe(0);
      await waitForEvent(id, 'die');
      await runtime.stop(id, 1_000);
      expect((await runtime.inspect(id))?.state).toBe('exited');
    }, TEST_TIMEOUT_MS);

    it('treats stop, remove and inspect of an absent container as no-ops', async () => {
      const absent = `ap-${prefix}-absent`;
      await expect(runtime.stop(absent, 1_000)).resolves.toBeUndefined();
      await expect(runtime.remove(absent)).resolves.toBeUndefined();
      await expect(runtime.inspect(absent)).resolves.toBeUndefined();
    }, TEST_TIMEOUT_MS);

    it('removes a running container: inspect is then undefined and a destroy event follows', async () => {
      const agentId = newAgentId();
      const id = await createAndStart(spec(agentId, 'sleep 60'));
      await runtime.remove(id);
      expect(await runtime.inspect(id)).toBeUndefined();
      const destroy = await waitForEvent(id, 'destroy');
      expect(destroy.agentId).toBe(agentId);
      expect((await runtime.list()).some((c) => c.containerId === id)).toBe(false);
      await runtime.remove(id);
    }, TEST_TIMEOUT_MS);

    it('lists managed containers, running or not, with their agent ids', async () => {
      const runningAgent = newAgentId();
      const createdAgent = newAgentId();
      const runningId = await createAndStart(spec(runningAgent, 'sleep 30'));
      const createdId = await runtime.create(spec(createdAgent, 'true'));
      await waitForState(runningId, 'running');
      const listed = await runtime.list();
      expect(listed.find((c) => c.containerId === runningId)).toMatchObject({ agentId: runningAgent, state: 'running' });
      expect(listed.find((c) => c.containerId === createdId)).toMatchObject({ agentId: createdAgent, state: 'created' });
      for (const c of listed) expect(c.agentId).not.toBe('');
    }, TEST_TIMEOUT_MS);

    describe('logs', () => {
      let id: string;
      let all: LogLine[];
      const before = Date.now();

      beforeAll(async () => {
        id = await createAndStart(spec(newAgentId(), 'echo out1; echo err1 >&2; echo out2; sleep 1.2; echo late'));
        await waitForState(id, 'exited');
        all = await collect(runtime.logs(id, {}));
      }, TEST_TIMEOUT_MS);

      it('returns stdout and stderr lines with timestamps', () => {
        // stdout and stderr are separate pipes: order is kept within a stream, not across.
        expect(all.filter((l) => l.stream === 'stdout').map((l) => l.text)).toEqual(['out1', 'out2', 'late']);
        expect(all.filter((l) => l.stream === 'stderr').map((l) => l.text)).toEqual(['err1']);
        expect(all).toHaveLength(4);
        for (const line of all) {
          expect(line.time).toBeGreaterThanOrEqual(before - 5_000);
          expect(line.time).toBeLessThanOrEqual(Date.now() + 5_000);
        }
        const out2 = all.find((l) => l.text === 'out2')!;
        const late = all.find((l) => l.text === 'late')!;
        expect(late.time - out2.time).toBeGreaterThanOrEqual(1_000);
      });

      it('honours tail', async () => {
        expect((await collect(runtime.logs(id, { tail: 1 }))).map((l) => l.text)).toEqual(['late']);
        const two = await collect(runtime.logs(id, { tail: 2 }));
        expect(two).toHaveLength(2);
        expect(two[1]!.text).toBe('late');
        expect(await collect(runtime.logs(id, { tail: 0 }))).toEqual([]);
      });

      it('honours sinceMs', async () => {
        const late = all.find((l) => l.text === 'late')!;
        const since = await collect(runtime.logs(id, { sinceMs: late.time }));
        expect(since.map((l) => l.text)).toEqual(['late']);
      });

      it('follows: streams a line written after the call, and an abort ends the iteration', async () => {
        const followed = await createAndStart(spec(newAgentId(), 'echo before; sleep 1; echo after; sleep 60'));
        const abort = new AbortController();
        const seen: LogLine[] = [];
        const calledAt = Date.now();
        const options: LogOptions = { follow: true };
        const reading = (async () => {
          for await (const line of runtime.logs(followed, options, abort.signal)) {
            seen.push(line);
            // Abort while the reader waits for more (the container keeps sleeping).
            if (line.text === 'after') setTimeout(() => abort.abort(), 200);
          }
        })();
        const ended = await Promise.race([
          reading.then(() => 'ended'),
          new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000)),
        ]);
        expect(ended).toBe('ended');
        expect(seen.map((l) => l.text)).toEqual(['before', 'after']);
        expect(seen[1]!.time).toBeGreaterThan(calledAt - 1_000);
        expect(seen[1]!.time - seen[0]!.time).toBeGreaterThanOrEqual(900);
        expect((await runtime.inspect(followed))?.state).toBe('running');
      }, TEST_TIMEOUT_MS);

      it('follow ends on its own when the container exits', async () => {
        const short = await createAndStart(spec(newAgentId(), 'echo one; sleep 1; echo two'));
        const lines = await collect(runtime.logs(short, { follow: true }));
        expect(lines.map((l) => l.text)).toEqual(['one', 'two']);
      }, TEST_TIMEOUT_MS);
    });

    it('starts an exited container again (the restart path)', async () => {
      const agentId = newAgentId();
      const id = await createAndStart(spec(agentId, 'echo run; exit 4'));
      const first = await waitForState(id, 'exited');
      expect(first.exitCode).toBe(4);
      await runtime.start(id);
      await waitFor('second run to finish', async () => {
        const observed = await runtime.inspect(id);
        return observed?.state === 'exited' && observed.startedAt! > first.startedAt! ? observed : undefined;
      });
      const runs = (await collect(runtime.logs(id, {}))).filter((l) => l.text === 'run');
      expect(runs).toHaveLength(ctx.capabilities?.logsKeptAcrossRestarts === false ? 1 : 2);
      const starts = await waitFor('two start events', () => {
        const found = events.filter((e) => e.containerId === id && e.action === 'start');
        return found.length >= 2 ? found : undefined;
      });
      expect(starts.every((e) => e.agentId === agentId)).toBe(true);
    }, TEST_TIMEOUT_MS);
  });
}
