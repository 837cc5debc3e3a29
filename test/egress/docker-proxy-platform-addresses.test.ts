import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { requireDocker } from '../helpers/require-docker.js';
import { ScopedRuntime } from '../integration/scoped-runtime.js';

const hasDocker = await requireDocker();

/**
 * The Docker agent network's proxy, as the platform wires it (build-security): it runs on the
 * host, so an address rule for 127.0.0.1:<port> would reach the platform's own API, or a
 * database and Redis on loopback, from the host's side of the host firewall. Real Docker
 * network and proxy; the test connects from the network's gateway address, registered as an
 * agent's source (what attach() does with a container's address), so no container is needed.
 */
describe.skipIf(!hasDocker)('Docker egress proxy: the platform\'s own addresses', () => {
  let dir: string;
  let platform: Platform;
  let apiPort: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ap-docker-egress-'));
    const config = loadConfig({
      AGENT_PLATFORM_PORT: '0',
      AGENT_PLATFORM_HOST: '127.0.0.1',
      AGENT_PLATFORM_LOG_LEVEL: 'silent',
      AGENT_PLATFORM_DATA_DIR: dir,
      AGENT_PLATFORM_ADMIN_TOKEN: `dpa_${randomBytes(16).toString('hex')}`,
      AGENT_PLATFORM_EGRESS_PROXY_PORT: '0',
      // No host rules needed: the test talks to the proxy port only.
      AGENT_PLATFORM_EGRESS_FIREWALL: 'false',
      AGENT_PLATFORM_EGRESS_DENIED_RANGES: '10.20.0.0/16',
      DOCKER_HOST: process.env.DOCKER_HOST,
    });
    const runtime = new ScopedRuntime(new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost }), () => false);
    platform = await buildPlatform(config, { runtimes: [runtime], security: { egressNodeIds: [config.nodeName] } });
    apiPort = Number(new URL(await platform.start()).port);
  }, 60_000);

  afterAll(async () => {
    await platform?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses loopback, metadata and the operator\'s ranges to an agent whose address rules name them (403, audited)', async () => {
    const network = platform.security.network!;
    const info = await network.start(AbortSignal.timeout(30_000));
    const proxy = network.proxy!;
    const proxyPort = Number(new URL(info.proxyUrl).port);
    proxy.register(info.gateway, { agentId: 'docker-agent', tenantId: 't1', allowlist: ['127.0.0.0/8:1-65535', '169.254.0.0/16:80', '10.0.0.0/8:1-65535'] });
    try {
      const targets = [`127.0.0.1:${apiPort}`, '127.0.0.1:5432', '127.0.0.1:6379', '169.254.169.254:80', '10.20.1.2:5432'];
      for (const target of targets) {
        const reply = await connectThroughGateway(proxyPort, info.gateway, target);
        expect(reply.statusCode, `${target}: ${reply.body}`).toBe(403);
        expect(reply.body, target).toMatch(/reserved for the platform|addresses are the platform's own/);
      }
      await platform.security.auditSink.flush();
      const records = (await platform.store.listEgressAudit({ limit: 1000 })).filter((r) => r.agentId === 'docker-agent');
      expect(records.map((r) => `${r.host}:${r.port} ${r.decision} ${r.reason} ${r.httpStatus}`).sort()).toEqual(targets.map((t) => `${t} deny denied-range 403`).sort());
    } finally {
      proxy.unregister(info.gateway);
    }
  });
});

/** CONNECT from the gateway address (the registered source) to the proxy on the gateway. */
async function connectThroughGateway(proxyPort: number, gateway: string, target: string) {
  const signal = AbortSignal.timeout(10_000);
  const socket = connect({ host: gateway, port: proxyPort, localAddress: gateway });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const text = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    socket.on('data', (c: Buffer) => (buffer += c.toString('latin1')));
    socket.once('close', () => resolve(buffer));
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  return { statusCode: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}
