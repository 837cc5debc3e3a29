import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { systemClock, type Clock } from './domain/clock.js';
import type { Logger } from './domain/logger.js';
import { MemoryBus } from './bus/memory-bus.js';
import type { Bus } from './bus/bus.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';
import { DockerRuntime } from './runtime/docker/docker-runtime.js';
import type { Runtime } from './runtime/runtime.js';
import { RuntimeRegistry } from './runtime/runtime-registry.js';
import { AgentController } from './controllers/agent-controller.js';
import { EventRecorder } from './controllers/event-recorder.js';
import { SingleNodePlacer } from './controllers/single-node-placer.js';
import type { Placer } from './controllers/placer.js';
import { AgentService } from './services/agent-service.js';
import { createApp } from './api/app.js';
import { Authenticator, bootstrapAdminToken } from './api/auth.js';
import { registerAgentRoutes } from './api/routes/agent-routes.js';
import { registerHealthRoutes } from './api/routes/health-routes.js';
import { registerEventRoutes } from './api/routes/event-routes.js';
import { registerMetricsRoutes } from './api/routes/metrics-routes.js';
import { PlatformMetrics } from './metrics/platform-metrics.js';
import { UsageSampler } from './metrics/usage-sampler.js';
import { NodeStatusPoller } from './metrics/node-status-poller.js';
import { instrumentRuntime } from './metrics/instrumented-runtime.js';
import { createDockerUsageCollector } from './metrics/docker-usage-collector.js';

export interface PlatformOverrides {
  store?: Store;
  bus?: Bus;
  clock?: Clock;
  runtimes?: Runtime[];
  placer?: Placer;
  /** Pino destination (tests pass a stream or set level "silent"). */
  logStream?: NodeJS.WritableStream;
}

export interface Platform {
  app: FastifyInstance;
  store: Store;
  bus: Bus;
  runtimes: RuntimeRegistry;
  controller: AgentController;
  agents: AgentService;
  /** Prometheus metrics (own registry) served at GET /metrics. */
  metrics: PlatformMetrics;
  /** Samples running agents' containers for /metrics and the usage API. */
  usage: UsageSampler;
  /** Set only when this start generated the admin token (print it once). */
  generatedAdminToken?: string | undefined;
  /** Starts controllers and listens; returns the bound address. */
  start(): Promise<string>;
  close(): Promise<void>;
}

/** Wiring only: builds every adapter from config and connects them. */
export async function buildPlatform(config: Readonly<Config>, overrides: PlatformOverrides = {}): Promise<Platform> {
  const pinoLogger = pino({ level: config.logLevel, base: { service: 'agent-platform' } }, overrides.logStream ?? process.stdout);
  const logger = pinoLogger as unknown as Logger;
  const clock = overrides.clock ?? systemClock;
  mkdirSync(config.dataDir, { recursive: true });
  const store = overrides.store ?? (await openStore(config.databaseUrl, config.dataDir));
  await store.migrate();
  // One id per installation (per store): containers carry it, so two platforms on one
  // Docker host never sweep each other's containers as orphans.
  const instanceId = await store.putSettingIfAbsent('platform_instance_id', randomBytes(8).toString('hex'));
  const bus = overrides.bus ?? new MemoryBus();
  const metrics = new PlatformMetrics();
  const runtimes = new RuntimeRegistry(
    (overrides.runtimes ?? [new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost, defaultSecurity: { instanceId } })]).map((r) => instrumentRuntime(r, metrics)),
  );
  const placer = overrides.placer ?? new SingleNodePlacer(config.nodeName);
  const events = new EventRecorder(store, bus, clock);
  const agents = new AgentService(store, bus, clock, events, { cpu: config.defaultCpu, memory: config.defaultMemory });
  const controller = new AgentController({
    store,
    bus,
    clock,
    logger: logger.child({ component: 'agent-controller' }),
    runtimes,
    placer,
    events,
    decision: { startTimeoutMs: config.startTimeoutMs, stopTimeoutMs: config.stopTimeoutMs, deleteTimeoutMs: config.deleteTimeoutMs, stopGraceMs: config.stopGraceMs },
    containers: { pidsLimit: config.pidsLimit, tmpSizeMiB: config.tmpSizeMiB, dataSizeMiB: config.dataSizeMiB },
    concurrency: config.reconcileConcurrency,
    resyncIntervalMs: config.resyncIntervalMs,
    metrics,
  });
  // Docker nodes are sampled from this machine's cgroup files (stats API as fallback);
  // other drivers (simulated) have no containers to sample.
  const dockerCollector = createDockerUsageCollector(config.dockerHost, logger.child({ component: 'usage-sampler' }));
  const usage = new UsageSampler({
    store,
    runtimes,
    collectorFor: (r) => (r.driver === 'docker' ? dockerCollector : undefined),
    intervalMs: config.usageIntervalMs,
    retentionMs: config.usageRetentionMs,
    clock,
    logger: logger.child({ component: 'usage-sampler' }),
  });
  const nodeStatus = new NodeStatusPoller({ store, runtimes, allocations: () => usage.current(), intervalMs: Math.max(config.usageIntervalMs, 1_000), logger });
  metrics.setSources({
    countAgents: () => store.countAgents(),
    queueDepth: () => bus.depth(),
    nodes: () => nodeStatus.nodes(),
    ready: () => nodeStatus.ready(),
    containers: () => usage.current(),
  });
  const unsubscribeOom = bus.subscribe((e) => {
    if (e.objectKind === 'Agent' && e.reason === 'OOMKilled') metrics.countOomKill(e.objectId, e.tenantId);
  });

  const admin = await bootstrapAdminToken(store, config.adminToken);
  const auth = new Authenticator(admin.hash);
  const { app, routes, finish } = await createApp({
    logger: pinoLogger,
    bodyLimitBytes: config.bodyLimitBytes,
    authenticate: auth.authenticate,
    observeRequest: (method, route, status, seconds) => metrics.observeHttpRequest(method, route, status, seconds),
  });
  registerHealthRoutes(routes, { store, runtimes });
  registerAgentRoutes(routes, { agents, store, runtimes, deleteWaitMs: 15_000, usage: (id) => usage.latest(id) });
  registerMetricsRoutes(routes, { metrics, sampler: usage, agents, metricsToken: config.metricsToken });
  registerEventRoutes(routes, { store, bus });
  await finish();

  let pruneTimer: NodeJS.Timeout | undefined;
  return {
    app,
    store,
    bus,
    runtimes,
    controller,
    agents,
    metrics,
    usage,
    generatedAdminToken: admin.generated,
    async start() {
      controller.start();
      usage.start();
      nodeStatus.start();
      pruneTimer = setInterval(() => {
        store.pruneEvents(clock.now() - config.eventRetentionMs).catch((err: unknown) => logger.warn({ err }, 'event pruning failed'));
      }, 3600_000);
      pruneTimer.unref();
      return app.listen({ port: config.port, host: config.host });
    },
    async close() {
      clearInterval(pruneTimer);
      await controller.stop();
      unsubscribeOom();
      await usage.stop();
      await nodeStatus.stop();
      await app.close();
      await bus.close();
      await runtimes.close();
      await store.close();
    },
  };
}
