import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { applyHeapGrowthPercent } from './heap-growth.js';
import { systemClock, type Clock } from './domain/clock.js';
import type { Logger } from './domain/logger.js';
import { MemoryBus } from './bus/memory-bus.js';
import { LeaderElector } from './ha/leader-elector.js';
import { registerLeaderRoutes } from './api/routes/leader-routes.js';
import type { Bus } from './bus/bus.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';
import type { Runtime } from './runtime/runtime.js';
import { RuntimeRegistry } from './runtime/runtime-registry.js';
import { KubernetesRuntime } from './runtime/kubernetes/kubernetes-runtime.js';
import { AgentController } from './controllers/agent-controller.js';
import { EventRecorder } from './controllers/event-recorder.js';
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
import { nodeMetricsFromPool } from './metrics/node-pool-metrics.js';
import { instrumentRuntime } from './metrics/instrumented-runtime.js';
import { usageCollectors } from './metrics/usage-collectors.js';
import { CreateBackpressure } from './services/create-backpressure.js';
import { Scheduler } from './scheduler/index.js';
import { loadNodePool } from './nodes/node-config.js';
import { buildNodePool } from './nodes/node-definitions.js';
import { NodeEvictor } from './nodes/node-evictor.js';
import { NodePoolService } from './nodes/node-pool-service.js';
import { SchedulerPlacer } from './nodes/scheduler-placer.js';
import { registerNodeRoutes } from './api/routes/node-routes.js';
import { registerTenantRoutes } from './api/routes/tenant-routes.js';
import { registerUsageRoutes } from './api/routes/usage-routes.js';
import { registerAuditRoutes } from './api/routes/audit-routes.js';
import { ApiKeyService } from './tenancy/api-key-service.js';
import { TenantService } from './tenancy/tenant-service.js';
import { AdmissionQueue } from './tenancy/admission.js';
import { UsageMeter, cpuCountersFrom } from './tenancy/usage-meter.js';
import { AuditLog } from './tenancy/audit-log.js';
import { RateCard } from './tenancy/rate-card.js';
import { MemoryRateLimiter, type RateLimiter } from './tenancy/rate-limiter.js';
import { tenantAwareAuthenticate } from './tenancy/tenant-context.js';
import { buildSecurity, type Security, type SecurityOverrides } from './security/build-security.js';

export interface PlatformOverrides {
  store?: Store;
  bus?: Bus;
  clock?: Clock;
  runtimes?: Runtime[];
  placer?: Placer;
  /** Pino destination (tests pass a stream or set level "silent"). */
  logStream?: NodeJS.WritableStream;
  /** Egress proxy test knobs (hosts file); see src/security/build-security.ts. */
  security?: SecurityOverrides;
}

export interface Platform {
  app: FastifyInstance;
  store: Store;
  bus: Bus;
  runtimes: RuntimeRegistry;
  /** Nodes: heartbeats, conditions, cordon/drain. */
  nodes: NodePoolService;
  /** The placer in use (a SchedulerPlacer unless overridden). */
  placer: Placer;
  controller: AgentController;
  agents: AgentService;
  /** Prometheus metrics (own registry) served at GET /metrics. */
  metrics: PlatformMetrics;
  /** Samples running agents' containers for /metrics and the usage API. */
  usage: UsageSampler;
  /** Set only when this start generated the admin token (print it once). */
  generatedAdminToken?: string | undefined;
  /** Secrets, sandbox hooks and the agents' egress network (src/security). */
  security: Security;
  /** Tenants, API keys, quota queue, usage metering, audit (src/tenancy). */
  tenancy: { tenants: TenantService; apiKeys: ApiKeyService; admission: AdmissionQueue; meter: UsageMeter; audit: AuditLog; rateCard: RateCard };
  /** Whether this replica runs the controllers now (always true without Redis). */
  isLeader(): boolean;
  /** Starts controllers and listens; returns the bound address. */
  start(): Promise<string>;
  close(): Promise<void>;
}

/** Wiring only: builds every adapter from config and connects them. */
export async function buildPlatform(config: Readonly<Config>, overrides: PlatformOverrides = {}): Promise<Platform> {
  const pinoLogger = pino({ level: config.logLevel, base: { service: 'agent-platform' } }, overrides.logStream ?? process.stdout);
  const logger = pinoLogger as unknown as Logger;
  const clock = overrides.clock ?? systemClock;
  applyHeapGrowthPercent(config.heapGrowthPercent);
  mkdirSync(config.dataDir, { recursive: true });
  const store = overrides.store ?? (await openStore(config.databaseUrl, config.dataDir, { sqliteCacheMiB: config.sqliteCacheMiB, fencingTimeoutMs: config.leaseTtlMs }));
  await store.migrate();
  // One id per installation (per store): containers carry it, so two platforms on one
  // Docker host never sweep each other's containers as orphans.
  const instanceId = await store.putSettingIfAbsent('platform_instance_id', randomBytes(8).toString('hex'));
  // With Redis, replicas share the work queue and events, and a leader lease picks the
  // one that runs the controllers (claims outlive a dead leader by 3 TTLs at most).
  // The Redis modules (and ioredis) are loaded only when Redis is configured: an embedded
  // platform does not carry them (tens of MiB of RSS; docs/benchmarks.md).
  const redis = config.redisUrl
    ? {
        url: config.redisUrl,
        ...(await import('./bus/redis-bus.js')),
        ...(await import('./ha/redis-leader-lease.js')),
        ...(await import('./tenancy/redis-rate-limiter.js')),
      }
    : undefined;
  let bus: Bus;
  if (overrides.bus) bus = overrides.bus;
  else if (redis) {
    const redisBus = new redis.RedisBus({ url: redis.url, prefix: config.redisPrefix, claimTtlMs: 3 * config.leaseTtlMs, logger: logger.child({ component: 'redis-bus' }) });
    await redisBus.ready();
    bus = redisBus;
  } else bus = new MemoryBus();
  const metrics = new PlatformMetrics();
  const nodeEntries = loadNodePool({ AGENT_PLATFORM_NODES_FILE: config.nodesFile, AGENT_PLATFORM_NODES: config.nodesJson, nodeName: config.nodeName, dockerHost: config.dockerHost });
  const nodePool = buildNodePool(nodeEntries, {
    defaultDockerHost: config.dockerHost,
    runtimes: overrides.runtimes,
    dockerSecurity: { instanceId },
    instanceId,
    // Kubernetes nodes mirror a tenant's quota into its namespace on its first agent there.
    tenantQuota: async (tenantId) => (await store.getTenantQuota(tenantId)).limits,
  });
  const instrumented = new Map(nodePool.runtimes.map((r) => [r.nodeId, instrumentRuntime(r, metrics)]));
  const runtimes = new RuntimeRegistry([...instrumented.values()]);
  const events = new EventRecorder(store, bus, clock);
  let schedulerPlacer: SchedulerPlacer | undefined;
  let releaseAgent: (agentId: string) => void = () => undefined;
  // Bound once the elector exists (below); a single process always leads.
  let isLeaderNow: () => boolean = () => true;
  // With leader election its node-lost passes run in the leader's terms (lead(), below).
  const evictor = new NodeEvictor({ store, bus, clock, logger: logger.child({ component: 'node-evictor' }), events, runtimes, release: (id) => releaseAgent(id), stopGraceMs: config.stopGraceMs, leaderElection: redis !== undefined });
  const nodes = new NodePoolService({
    store,
    bus,
    clock,
    logger: logger.child({ component: 'node-pool' }),
    events,
    evictor,
    nodes: nodePool.definitions.map((d) => ({ ...d, runtime: instrumented.get(d.id) ?? d.runtime })),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    graceMs: config.nodeGraceMs,
    unhealthyFailureThreshold: config.nodeUnhealthyFailures,
    unhealthyWindowMs: config.nodeUnhealthyWindowMs,
    unhealthyCooldownMs: config.nodeUnhealthyCooldownMs,
  });
  if (!overrides.placer) {
    schedulerPlacer = new SchedulerPlacer({
      nodes,
      scheduler: new Scheduler({ sampling: config.schedulerSampling, percentageOfNodesToScore: config.schedulerPercentageOfNodesToScore }),
      bus,
      logger: logger.child({ component: 'scheduler' }),
    });
  }
  const placer: Placer = overrides.placer ?? schedulerPlacer!;
  releaseAgent = (id) => placer.release(id);
  const agents = new AgentService(store, bus, clock, events, { cpu: config.defaultCpu, memory: config.defaultMemory });
  let backlogErrorLoggedAt = -Infinity;
  agents.backpressure = new CreateBackpressure({
    backlog: () => bus.backlog(),
    limit: config.createBacklogLimit,
    maxWaitMs: config.createBacklogWaitMs,
    onWaited: (ms) => metrics.observeCreateWait(ms / 1000),
    onError: (err) => {
      // Read every few ms while creates wait: one line per 10 s is enough to tell.
      if (clock.now() - backlogErrorLoggedAt < 10_000) return;
      backlogErrorLoggedAt = clock.now();
      logger.warn({ err }, 'work queue backlog unreadable; creates go ahead without backpressure');
    },
  });
  const security = await buildSecurity({ config, store, clock, logger, events, agents, instanceId, runtimes: nodePool.runtimes, overrides: overrides.security });
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
    sandbox: security.sandbox,
  });
  const usage = new UsageSampler({
    store,
    runtimes,
    collectorFor: usageCollectors({ runtimes: nodePool.runtimes, defaultDockerHost: config.dockerHost, clock, logger }),
    intervalMs: config.usageIntervalMs,
    retentionMs: config.usageRetentionMs,
    clock,
    logger: logger.child({ component: 'usage-sampler' }),
  });
  const nodeStatus = new NodeStatusPoller({ store, runtimes, allocations: () => usage.current(), intervalMs: Math.max(config.usageIntervalMs, 1_000), logger });
  metrics.setSources({
    countAgents: () => store.countAgents(),
    queueDepth: () => bus.depth(),
    createsWaiting: () => agents.backpressure?.waiting() ?? 0,
    // Capacity, readiness and allocation as the scheduler sees them (heartbeats + assume cache).
    nodes: () => nodeMetricsFromPool(nodes.nodes(), (id) => schedulerPlacer?.allocationOf(id)),
    ready: () => nodeStatus.ready(),
    containers: () => usage.current(),
  });
  const unsubscribeOom = bus.subscribe((e) => {
    if (e.objectKind === 'Agent' && e.reason === 'OOMKilled') metrics.countOomKill(e.objectId, e.tenantId);
  });

  const admin = await bootstrapAdminToken(store, config.adminToken);
  const auth = new Authenticator(admin.hash);
  // Tenancy: API keys resolve after the bootstrap token; rate limits, X-Tenant and the
  // audit log wrap authentication. Meter and queue are safe on every replica (their store
  // writes compare-and-set), so they run on each, leader or not.
  const apiKeys = new ApiKeyService(store, clock);
  auth.addResolver(apiKeys.resolve);
  const bucket = { ratePerSecond: config.rateLimitRps, burst: config.rateLimitBurst };
  const rateLimiter: RateLimiter | undefined =
    config.rateLimitRps > 0 ? (redis ? new redis.RedisRateLimiter(redis.url, bucket, `${config.redisPrefix}ratelimit:`) : new MemoryRateLimiter(bucket)) : undefined;
  const rateCard = RateCard.load(config.rateCard, config.rateCardFile);
  const audit = new AuditLog(store, clock, logger.child({ component: 'audit' }));
  // Kubernetes nodes mirror a tenant's quota into its namespace; a change is pushed at once.
  const clusters = nodePool.runtimes.filter((r): r is KubernetesRuntime => r instanceof KubernetesRuntime);
  // A restarted Pod is built from the agent's spec as it is now (a network mode changed while
  // stopped), and the Pods' deadline margin covers the start timeout.
  for (const cluster of clusters) {
    cluster.attachController({
      startTimeoutMs: config.startTimeoutMs,
      containerSpecOf: async (agentId, signal) => {
        const agent = await store.getAgent(agentId);
        return agent && security.sandbox.prepare(agent, controller.containerSpec(agent), signal);
      },
    });
  }
  const tenants = new TenantService(store, clock, agents, async (tenantId) => {
    const results = await Promise.allSettled(clusters.map((c) => c.syncTenantQuota(tenantId, AbortSignal.timeout(10_000))));
    results.forEach((r, i) => {
      if (r.status === 'rejected') logger.warn({ err: r.reason, tenantId, nodeId: clusters[i]!.nodeId }, 'could not push the new quota into the tenant namespace; its next agent create retries');
    });
  });
  const admission = new AdmissionQueue({ store, bus, clock, events, intervalMs: config.admissionIntervalMs, logger: logger.child({ component: 'admission' }) });
  const meter = new UsageMeter({
    store,
    clock,
    intervalMs: config.usageAccrualIntervalMs,
    maxStepMs: config.usageMaxStepMs,
    cpuCounter: cpuCountersFrom(() => usage.current()),
    isLeader: () => isLeaderNow(),
    logger: logger.child({ component: 'usage-meter' }),
  });
  // The closing piece of a run gets its used CPU from the sampler's last reading of it.
  usage.onRunEnded((run) => meter.runEnded(run));
  const { app, routes, finish } = await createApp({
    logger: pinoLogger,
    bodyLimitBytes: config.bodyLimitBytes,
    authenticate: tenantAwareAuthenticate({ authenticate: auth.authenticate, store, limiter: rateLimiter }),
    observeRequest: (method, route, status, seconds) => metrics.observeHttpRequest(method, route, status, seconds),
  });
  registerHealthRoutes(routes, { store, runtimes });
  const keyWatch = { check: apiKeys.check, intervalMs: config.streamKeyRecheckMs, clock, logger: logger.child({ component: 'stream-key-watch' }) };
  registerAgentRoutes(routes, { agents, store, runtimes, deleteWaitMs: config.deleteWaitMs, usage: (id) => usage.latest(id), keyWatch });
  registerMetricsRoutes(routes, { metrics, sampler: usage, agents, metricsToken: config.metricsToken });
  registerEventRoutes(routes, { store, bus, keyWatch });
  app.addHook('onSend', audit.onSend);
  registerTenantRoutes(routes, { tenants, keys: apiKeys, clock, deleteWaitMs: config.deleteWaitMs });
  registerUsageRoutes(routes, { tenants, store, rateCard, clock, maxStepMs: config.usageMaxStepMs });
  registerAuditRoutes(routes, { audit });
  security.registerRoutes(routes);
  const lease = redis ? new redis.RedisLeaderLease({ url: redis.url, prefix: config.redisPrefix, ttlMs: config.leaseTtlMs, logger: logger.child({ component: 'leader-lease' }) }) : undefined;
  const elector = lease
    ? new LeaderElector({
        lease,
        replicaId: config.replicaId,
        logger: logger.child({ component: 'leader-elector' }),
        // Each term's token is recorded in the store before it leads; the controller's
        // writes carry it, and one the store refuses (a newer leader) ends the term.
        fence: store,
        // Only the leader runs controllers; its books are rebuilt at the start of each term,
        // since another replica led in between.
        lead: async (signal, fencingToken, stepDown) => {
          if (schedulerPlacer) await schedulerPlacer.rebuild(store, signal);
          controller.start(signal, { fencingToken, stepDown });
          evictor.lead(signal, { fencingToken, stepDown });
        },
      })
    : undefined;
  if (elector) isLeaderNow = () => elector.isLeader();
  registerLeaderRoutes(routes, {
    status: async (signal) => {
      if (!lease || !elector) return { replicaId: config.replicaId, mode: 'single' as const, leader: true };
      const term = elector.term();
      const holder = await lease.holder(signal).then(
        (h) => h ?? null,
        () => undefined,
      );
      return { replicaId: config.replicaId, mode: 'lease' as const, leader: term !== undefined, fencingToken: term?.fencingToken, ...(holder !== undefined ? { holder } : {}) };
    },
  });
  registerNodeRoutes(routes, { nodes, store, allocationOf: (id) => schedulerPlacer?.allocationOf(id) ?? { cpuMillicores: 0, memoryMiB: 0, agents: 0, gpuIds: [] }, usage: (id, tenantId) => usage.nodeUsage(id, tenantId) });
  await finish();

  let pruneTimer: NodeJS.Timeout | undefined;
  return {
    app,
    store,
    bus,
    runtimes,
    nodes,
    placer,
    controller,
    agents,
    metrics,
    usage,
    generatedAdminToken: admin.generated,
    security,
    tenancy: { tenants, apiKeys, admission, meter, audit, rateCard },
    isLeader: () => elector?.isLeader() ?? true,
    async start() {
      // Nodes first (one heartbeat round, so answering nodes are Ready), then the books
      // (agents already bound), then the controller that places new agents.
      await nodes.start();
      if (elector) {
        // Several replicas: the controllers start when (and while) this one leads.
        elector.start();
      } else {
        if (schedulerPlacer) {
          const adopted = await schedulerPlacer.rebuild(store);
          if (adopted > 0) logger.info({ agents: adopted }, 'allocation rebuilt from the store');
        }
        controller.start();
      }
      usage.start();
      nodeStatus.start();
      admission.start();
      meter.start();
      pruneTimer = setInterval(() => {
        store.pruneEvents(clock.now() - config.eventRetentionMs).catch((err: unknown) => logger.warn({ err }, 'event pruning failed'));
        store.pruneEgressAudit(clock.now() - config.eventRetentionMs).catch((err: unknown) => logger.warn({ err }, 'egress audit pruning failed'));
      }, config.eventPruneIntervalMs);
      pruneTimer.unref();
      // Every replica serves the cluster egress listener (the Service spreads Pods over them).
      await security.start();
      return app.listen({ port: config.port, host: config.host });
    },
    async close() {
      clearInterval(pruneTimer);
      // First: held creates would keep the HTTP server open until their max wait, since the
      // controllers that would shrink the backlog stop next.
      agents.backpressure?.close();
      // Gives the lease up, so another replica leads at once instead of after one TTL.
      await elector?.stop();
      await controller.stop();
      await nodes.stop();
      schedulerPlacer?.close();
      unsubscribeOom();
      await admission.stop();
      await meter.stop();
      await rateLimiter?.close();
      await usage.stop();
      await nodeStatus.stop();
      await app.close();
      await bus.close();
      await lease?.close();
      await runtimes.close();
      await nodePool.close();
      await security.close();
      await store.close();
    },
  };
}
