import { getEventListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConflictError, NotFoundError, UnavailableError } from '../../src/domain/errors.js';
import { parseDockerHost } from '../../src/runtime/docker/docker-host.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL, MANAGED_LABEL, containerName, type LogLine, type RuntimeEvent } from '../../src/runtime/runtime.js';
import { runtimeConformance, shellSpec, waitFor } from '../conformance/runtime-conformance.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';

const hasDocker = await requireDocker();
const image = hasDocker ? await ensureBusyboxImage() : 'agent-platform/busybox:latest';

describe.skipIf(!hasDocker)('DockerRuntime', () => {
  runtimeConformance('docker', async () => {
    const runtime = new DockerRuntime({ nodeId: 'conformance-node' });
    return { runtime, image, cleanup: () => runtime.close() };
  });

  describe('docker specifics', () => {
    const prefix = `d${randomBytes(4).toString('hex')}`;
    let counter = 0;
    const newAgentId = (): string => `${prefix}-${++counter}`;
    const runtime = new DockerRuntime({ nodeId: 'docker-node' });
    const docker = new Docker();

    const runToExit = async (script: string, overrides = {}): Promise<{ id: string; lines: LogLine[] }> => {
      const id = await runtime.create(shellSpec(newAgentId(), image, script, overrides));
      await runtime.start(id);
      await waitFor('exit', async () => ((await runtime.inspect(id))?.state === 'exited' ? true : undefined));
      const lines: LogLine[] = [];
      for await (const line of runtime.logs(id, {})) lines.push(line);
      return { id, lines };
    };

    afterAll(async () => {
      const mine = await docker.listContainers({ all: true, filters: { name: [`ap-${prefix}-`] } });
      await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
      await runtime.close();
    });

    it('leaves nothing on a long-lived caller signal after its calls (no AbortSignal.any leak)', async () => {
      // The controller passes one signal for as long as it leads; every call used to leave a
      // WeakRef in it (nodejs/node#55351), so memory grew with every Docker call.
      const leadership = new AbortController();
      const { id } = await runToExit('echo hi');
      for (let i = 0; i < 20; i++) await runtime.inspect(id, leadership.signal);
      const lines: LogLine[] = [];
      for await (const line of runtime.logs(id, {}, leadership.signal)) lines.push(line);
      expect(lines.map((l) => l.text)).toContain('hi');
      expect(getEventListeners(leadership.signal, 'abort')).toHaveLength(0);
      const dependants = Object.getOwnPropertySymbols(leadership.signal).find((s) => s.description === 'kDependantSignals');
      expect(dependants === undefined ? 0 : (leadership.signal as unknown as Record<symbol, Set<unknown>>)[dependants]!.size).toBe(0);
    }, 30_000);

    it('reports an OOM kill: exit 137 and oomKilled', async () => {
      const { id } = await runToExit(`x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived; sleep 1`, { memoryLimitMiB: 16 });
      const observed = await runtime.inspect(id);
      expect(observed).toMatchObject({ state: 'exited', exitCode: 137, oomKilled: true });
    }, 30_000);

    it('runs locked down: uid 1000, read-only root, writable /tmp and /data, no network, no capabilities', async () => {
      const script = [
        'echo "uid=$(id -u) gid=$(id -g)"',
        'if touch /rootfs-probe 2>/dev/null; then echo "root=writable"; else echo "root=readonly"; fi',
        'if echo x > /tmp/probe && echo y > /data/probe; then echo "scratch=writable"; else echo "scratch=readonly"; fi',
        'echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" ",")"',
        'grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status | tr -d "\\t"',
        'echo "nofile=$(ulimit -n)"',
        'echo "tmpmode=$(stat -c %a /tmp) datamode=$(stat -c %a:%u /data)"',
      ].join('; ');
      const { id, lines } = await runToExit(script);
      const out = lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
      expect(out).toEqual([
        'uid=1000 gid=1000',
        'root=readonly',
        'scratch=writable',
        'ifaces=lo,',
        'CapPrm:0000000000000000',
        'CapEff:0000000000000000',
        'NoNewPrivs:1',
        'nofile=1024',
        'tmpmode=1777 datamode=700:1000',
      ]);
      // The daemon applied the limits we asked for.
      const inspected = await docker.getContainer(id).inspect();
      expect(inspected.HostConfig).toMatchObject({
        Memory: 64 * 2 ** 20,
        MemorySwap: 64 * 2 ** 20,
        NanoCpus: 500_000_000,
        PidsLimit: 64,
        ReadonlyRootfs: true,
        NetworkMode: 'none',
        Privileged: false,
        CapDrop: ['ALL'],
      });
    }, 30_000);

    it('enforces the pids limit', async () => {
      const script = 'for i in $(seq 1 40); do sleep 1 & done; wait; echo all-spawned';
      // Control: the same script fits in a larger limit, so a failure below is the limit's doing.
      const roomy = await runToExit(script, { pidsLimit: 64 });
      expect(roomy.lines.map((l) => l.text)).toContain('all-spawned');
      const tight = await runToExit(script, { pidsLimit: 10 });
      expect(tight.lines.map((l) => l.text)).not.toContain('all-spawned');
      expect(tight.lines.some((l) => l.stream === 'stderr' && /can't fork|resource temporarily unavailable/i.test(l.text))).toBe(true);
    }, 30_000);

    it('lists only managed containers', async () => {
      const agentId = newAgentId();
      // Carries the agent-id label but not the managed label: not ours.
      const stray = await docker.createContainer({
        Image: image,
        name: `ap-${prefix}-stray`,
        Cmd: ['true'],
        Labels: { [AGENT_ID_LABEL]: agentId },
      });
      const listed = await runtime.list();
      expect(listed.some((c) => c.containerId === stray.id)).toBe(false);
      expect(listed.every((c) => c.agentId !== '')).toBe(true);
      const raw = await docker.listContainers({ all: true, filters: { label: [`${MANAGED_LABEL}=true`] } });
      expect(new Set(listed.map((c) => c.containerId))).toEqual(new Set(raw.map((c) => c.Id)));
    });

    it('refuses to adopt a container of the same name that belongs to someone else', async () => {
      const agentId = newAgentId();
      await docker.createContainer({ Image: image, name: containerName(agentId), Cmd: ['true'], Labels: { [AGENT_ID_LABEL]: 'other' } });
      const error = await runtime.create(shellSpec(agentId, image, 'true')).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ConflictError);
      expect((error as ConflictError).code).toBe('CONTAINER_NAME_TAKEN');
    });

    it('throws NotFoundError when starting or reading logs of an absent container', async () => {
      await expect(runtime.start(`ap-${prefix}-absent`)).rejects.toBeInstanceOf(NotFoundError);
      const reading = (async () => {
        for await (const _ of runtime.logs(`ap-${prefix}-absent`, {})) void _;
      })();
      await expect(reading).rejects.toMatchObject({ code: 'CONTAINER_NOT_FOUND' });
    });

    it('reports an unreachable daemon as UnavailableError', async () => {
      const dead = new DockerRuntime({ nodeId: 'dead', dockerHost: `unix:///tmp/${prefix}-missing.sock` });
      const error = await dead.ping().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as UnavailableError).code).toBe('RUNTIME_UNAVAILABLE');
      await dead.close();
    });

    describe('through a socket proxy', () => {
      let dir: string;
      let server: Server;
      const sockets = new Set<Socket>();
      let silent = false;
      const daemon = parseDockerHost(process.env.DOCKER_HOST);

      beforeAll(async () => {
        dir = await mkdtemp(join(tmpdir(), 'docker-proxy-'));
        // A real byte-level proxy to the real daemon that can hang or cut connections.
        server = createServer((client) => {
          sockets.add(client);
          client.on('close', () => sockets.delete(client));
          if (silent) return;
          const upstream = daemon.kind === 'unix' ? connect(daemon.socketPath) : connect(daemon.port, daemon.host);
          sockets.add(upstream);
          upstream.on('close', () => sockets.delete(upstream));
          client.pipe(upstream).pipe(client);
          client.on('error', () => upstream.destroy());
          upstream.on('error', () => client.destroy());
        });
        await new Promise<void>((resolve) => server.listen(join(dir, 'docker.sock'), resolve));
      });

      afterAll(async () => {
        for (const s of sockets) s.destroy();
        await new Promise((resolve) => server.close(resolve));
        await rm(dir, { recursive: true, force: true });
      });

      it('times out a call the daemon never answers, and honours an abort', async () => {
        silent = true;
        try {
          const slow = new DockerRuntime({ nodeId: 'slow', dockerHost: `unix://${join(dir, 'docker.sock')}`, callTimeoutMs: 300 });
          const started = Date.now();
          const error = await slow.ping().catch((err: unknown) => err);
          expect(error).toBeInstanceOf(UnavailableError);
          expect((error as UnavailableError).code).toBe('RUNTIME_TIMEOUT');
          expect(Date.now() - started).toBeLessThan(3_000);

          const abort = new AbortController();
          setTimeout(() => abort.abort(), 100);
          const aborted = await slow.info(abort.signal).catch((err: unknown) => err);
          expect((aborted as Error).name).toBe('AbortError');
          await slow.close();
        } finally {
          silent = false;
        }
      });

      it('watch reconnects after the connection drops and survives a throwing consumer', async () => {
        const proxied = new DockerRuntime({
          nodeId: 'proxied',
          dockerHost: `unix://${join(dir, 'docker.sock')}`,
          watchReconnectInitialMs: 50,
        });
        const events: RuntimeEvent[] = [];
        const abort = new AbortController();
        proxied.watch((event) => {
          events.push(event);
          throw new Error('consumer bug');
        }, abort.signal);
        try {
          const first = await proxied.create(shellSpec(newAgentId(), image, 'true'));
          await waitFor('create event', () => events.find((e) => e.containerId === first && e.action === 'create'));
          // Cut every connection: the watch has to notice and reconnect.
          for (const s of sockets) s.destroy();
          const second = await proxied.create(shellSpec(newAgentId(), image, 'true'));
          await proxied.start(second);
          await waitFor('events after reconnect', () => {
            const after = events.filter((e) => e.containerId === second).map((e) => e.action);
            return after.includes('create') && after.includes('start') && after.includes('die') ? after : undefined;
          });
        } finally {
          abort.abort();
          await proxied.close();
        }
      }, 30_000);
    });
  });
});
