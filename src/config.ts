import { z } from 'zod';
import path from 'node:path';
import { hostname } from 'node:os';
import { parseCidr } from './egress/cidr.js';

/**
 * All configuration, parsed once from the environment into a frozen object.
 * A bad value stops the start with a message naming the variable.
 */
const Env = z.object({
  AGENT_PLATFORM_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  AGENT_PLATFORM_HOST: z.string().min(1).default('127.0.0.1'),
  AGENT_PLATFORM_DATA_DIR: z.string().min(1).default('./data'),
  AGENT_PLATFORM_DATABASE_URL: z.string().optional(),
  AGENT_PLATFORM_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  AGENT_PLATFORM_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  AGENT_PLATFORM_RESYNC_INTERVAL_MS: z.coerce.number().int().min(100).default(10_000),
  AGENT_PLATFORM_RECONCILE_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  AGENT_PLATFORM_CREATE_BACKLOG_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(1024),
  AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  AGENT_PLATFORM_START_TIMEOUT_MS: z.coerce.number().int().min(1000).default(120_000),
  AGENT_PLATFORM_STOP_TIMEOUT_MS: z.coerce.number().int().min(1000).default(60_000),
  AGENT_PLATFORM_DELETE_TIMEOUT_MS: z.coerce.number().int().min(1000).default(120_000),
  AGENT_PLATFORM_DELETE_WAIT_MS: z.coerce.number().int().min(0).max(120_000).default(15_000),
  AGENT_PLATFORM_STOP_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
  AGENT_PLATFORM_BODY_LIMIT_BYTES: z.coerce.number().int().min(1024).default(1_048_576),
  AGENT_PLATFORM_EVENT_RETENTION_MS: z.coerce.number().int().min(1000).default(7 * 24 * 3600_000),
  AGENT_PLATFORM_EVENT_PRUNE_INTERVAL_MS: z.coerce.number().int().min(100).default(3600_000),
  AGENT_PLATFORM_DEFAULT_CPU: z.string().default('100m'),
  AGENT_PLATFORM_DEFAULT_MEMORY: z.string().default('128Mi'),
  AGENT_PLATFORM_PIDS_LIMIT: z.coerce.number().int().min(8).default(256),
  AGENT_PLATFORM_TMP_SIZE_MIB: z.coerce.number().int().min(1).default(64),
  AGENT_PLATFORM_DATA_SIZE_MIB: z.coerce.number().int().min(1).default(256),
  AGENT_PLATFORM_NODE_NAME: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/).default('local'),
  AGENT_PLATFORM_USAGE_INTERVAL_MS: z.coerce.number().int().min(100).default(10_000),
  AGENT_PLATFORM_USAGE_RETENTION_MS: z.coerce.number().int().min(1000).default(3600_000),
  AGENT_PLATFORM_METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  AGENT_PLATFORM_NODES_FILE: z.string().optional(),
  AGENT_PLATFORM_NODES: z.string().optional(),
  AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(50).default(2_000),
  AGENT_PLATFORM_NODE_GRACE_MS: z.coerce.number().int().min(100).default(10_000),
  AGENT_PLATFORM_NODE_UNHEALTHY_FAILURES: z.coerce.number().int().min(1).default(5),
  AGENT_PLATFORM_NODE_UNHEALTHY_WINDOW_MS: z.coerce.number().int().min(1000).default(300_000),
  AGENT_PLATFORM_NODE_UNHEALTHY_COOLDOWN_MS: z.coerce.number().int().min(1000).default(300_000),
  AGENT_PLATFORM_SCHEDULER_SAMPLING: z.enum(['true', 'false']).default('true'),
  AGENT_PLATFORM_SCHEDULER_PERCENTAGE_OF_NODES_TO_SCORE: z.coerce.number().int().min(0).max(100).default(0),
  AGENT_PLATFORM_REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  AGENT_PLATFORM_REDIS_PREFIX: z.string().min(1).default('agent-platform:'),
  AGENT_PLATFORM_LEASE_TTL_MS: z.coerce.number().int().min(500).default(5_000),
  AGENT_PLATFORM_REPLICA_ID: z.string().min(1).max(200).regex(/^\S+$/, 'must not contain spaces').optional(),
  AGENT_PLATFORM_RATE_LIMIT_RPS: z.coerce.number().min(0).default(50),
  AGENT_PLATFORM_RATE_LIMIT_BURST: z.coerce.number().int().min(1).default(100),
  AGENT_PLATFORM_RATE_CARD: z.string().optional(),
  AGENT_PLATFORM_RATE_CARD_FILE: z.string().optional(),
  AGENT_PLATFORM_SQLITE_CACHE_MIB: z.coerce.number().int().min(1).max(65536).default(16),
  AGENT_PLATFORM_HEAP_GROWTH_PERCENT: z.coerce
    .number()
    .int()
    .refine((v) => v === 0 || (v >= 10 && v <= 400), "must be 0 (V8's own heuristic) or from 10 to 400")
    .default(50),
  AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS: z.coerce.number().int().min(100).default(300_000),
  AGENT_PLATFORM_USAGE_MAX_STEP_MS: z.coerce.number().int().min(1000).default(3_600_000),
  AGENT_PLATFORM_ADMISSION_INTERVAL_MS: z.coerce.number().int().min(100).default(5_000),
  AGENT_PLATFORM_STREAM_KEY_RECHECK_MS: z.coerce.number().int().min(50).default(2_000),
  AGENT_PLATFORM_MIN_ISOLATION: z.enum(['runc', 'gvisor']).default('runc'),
  AGENT_PLATFORM_SECRET_KEY: z.string().optional(),
  AGENT_PLATFORM_SECRET_KEY_FILE: z.string().optional(),
  AGENT_PLATFORM_SECRET_KEYS_OLD: z.string().optional(),
  AGENT_PLATFORM_EGRESS_PROXY_PORT: z.coerce.number().int().min(0).max(65535).default(3128),
  AGENT_PLATFORM_EGRESS_FIREWALL: z.enum(['true', 'false']).default('true'),
  AGENT_PLATFORM_EGRESS_HOSTS_FILE: z.string().optional(),
  AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'must be host:port, e.g. 0.0.0.0:3128 or [::]:3128')
    .transform((text, ctx) => {
      const colon = text.lastIndexOf(':');
      const port = Number(text.slice(colon + 1));
      if (port > 65_535) ctx.addIssue({ code: 'custom', message: `port ${port} is above 65535` });
      return { host: text.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port };
    })
    .optional(),
  AGENT_PLATFORM_EGRESS_DENIED_RANGES: z
    .string()
    .transform((text, ctx) => {
      const ranges = text.split(',').map((r) => r.trim()).filter((r) => r !== '');
      for (const range of ranges) {
        try {
          parseCidr(range);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `${err instanceof Error ? err.message : String(err)}; expected comma-separated addresses or CIDR blocks, e.g. 10.20.0.0/16,fd00::/8` });
        }
      }
      return ranges;
    })
    .optional(),
  AGENT_PLATFORM_EGRESS_PLATFORM_RESOLVE_INTERVAL_MS: z.coerce.number().int().min(1_000).default(60_000),
  /** Set by Kubernetes in every Pod: the API server's Service address, which the egress proxy refuses. */
  KUBERNETES_SERVICE_HOST: z.string().optional(),
  DOCKER_HOST: z.string().optional(),
});

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl?: string | undefined;
  adminToken?: string | undefined;
  logLevel: string;
  resyncIntervalMs: number;
  reconcileConcurrency: number;
  /** Creates wait at the API while this many reconciles are due and waiting; 0: never. */
  createBacklogLimit: number;
  /** Longest a create waits for the backlog to fall; then it goes ahead. */
  createBacklogWaitMs: number;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  deleteTimeoutMs: number;
  /**
   * How long `DELETE /agents/{id}` and a cascade `DELETE /tenants/{id}` hold the request for
   * the agents to go before answering 202 (the delete goes on). Longer saves clients a poll,
   * at the cost of a request (and a connection) held that long.
   */
  deleteWaitMs: number;
  stopGraceMs: number;
  bodyLimitBytes: number;
  eventRetentionMs: number;
  /** How often events (and egress audit records) older than the retention are deleted. */
  eventPruneIntervalMs: number;
  defaultCpu: string;
  defaultMemory: string;
  pidsLimit: number;
  tmpSizeMiB: number;
  dataSizeMiB: number;
  nodeName: string;
  /** How often the containers of running agents are sampled (CPU, memory) for /metrics and the usage API. */
  usageIntervalMs: number;
  /** How long per-agent usage history is kept in memory. */
  usageRetentionMs: number;
  /** Bearer token required by GET /metrics; unset: /metrics is open. */
  metricsToken?: string | undefined;
  dockerHost?: string | undefined;
  /** Node pool file (YAML or JSON; see src/nodes/node-config.ts); unset: one local Docker node. */
  nodesFile?: string | undefined;
  /** Node pool as inline JSON; exclusive with nodesFile. */
  nodesJson?: string | undefined;
  /** How often every node is pinged. */
  heartbeatIntervalMs: number;
  /** A node with no successful ping for this long is NotReady: no new agents, its agents move. */
  nodeGraceMs: number;
  /** Node-fault agent failures (StartError, StartTimeout) within the window that mark a node unhealthy. */
  nodeUnhealthyFailures: number;
  nodeUnhealthyWindowMs: number;
  /** The unhealthy mark clears on its own after this long (or on uncordon). */
  nodeUnhealthyCooldownMs: number;
  /**
   * kube-scheduler's percentageOfNodesToScore: on pools above 100 nodes, stop looking once
   * enough feasible nodes are found. Faster on big pools; the node chosen is the best of
   * those examined, not necessarily of the pool. Off: always the best node.
   */
  schedulerSampling: boolean;
  /** Percent of nodes to find when sampling; 0 = adaptive, max(5, 50 - nodes/125) as kube-scheduler. */
  schedulerPercentageOfNodesToScore: number;
  /**
   * Redis shared by the replicas of one installation. Set: the work queue and events go
   * through Redis (RedisBus) and a leader lease picks the one replica that runs the
   * controllers; every replica serves the API. Unset: one process, in-memory bus.
   */
  redisUrl?: string | undefined;
  /** Prefix of every Redis key and channel; the replicas of one installation share it. */
  redisPrefix: string;
  /** Leader lease TTL: a dead leader is replaced after at most about this long (plus a quarter). */
  leaseTtlMs: number;
  /** This replica's name in the lease and logs; default hostname-pid. */
  replicaId: string;
  /** Sustained requests per second per API key (token bucket refill); 0 disables rate limits. Shared through Redis when redisUrl is set. */
  rateLimitRps: number;
  /** Token bucket size per API key: requests allowed at once after a quiet spell. */
  rateLimitBurst: number;
  /** Rate card JSON (src/tenancy/rate-card.ts); wins over rateCardFile. Unset with no file: usage is free. */
  rateCard?: string | undefined;
  rateCardFile?: string | undefined;
  /** How often the usage meter closes Running intervals into the ledger (the most a bill lags). */
  usageAccrualIntervalMs: number;
  /** SQLite page cache in MiB (the embedded store only). */
  sqliteCacheMiB: number;
  /**
   * How far V8 lets the heap grow past what survived the last full GC, in percent (process
   * wide, see src/heap-growth.ts); 0: V8's own heuristic, which under load lets the heap
   * reach four times the live data.
   */
  heapGrowthPercent: number;
  /** Longest interval one accrual bills; longer gaps are clock jumps (or outages) and are skipped beyond this. */
  usageMaxStepMs: number;
  /** Fallback interval of the admission queue (releases trigger it at once). */
  admissionIntervalMs: number;
  /** How often an open event stream or log follow re-checks its API key (revocation ends it within this). */
  streamKeyRecheckMs: number;
  /** Weakest isolation class any agent gets (gvisor: every agent is sandboxed, whatever it asks). */
  minIsolation: 'runc' | 'gvisor';
  /** base64 of 32 bytes: the key that seals secrets; wins over secretKeyFile. Neither: a key file generated in the data dir. */
  secretKey?: string | undefined;
  secretKeyFile?: string | undefined;
  /** Comma-separated base64 keys that only decrypt (rotation; see docs/security.md). */
  secretKeysOld?: string | undefined;
  /** Port of the egress proxy on the agent network's gateway (0: any free port). */
  egressProxyPort: number;
  /** Install host iptables rules so agents reach nothing on the host but the proxy. */
  egressFirewall: boolean;
  /** /etc/hosts-format file the egress proxy consults before DNS (answers vetted like DNS). */
  egressHostsFile?: string | undefined;
  /**
   * Where the egress proxy listens for agents on Kubernetes nodes, which identify themselves
   * with per-agent credentials in their proxy URL (docs/kubernetes.md); port 0 picks one.
   * Unset: no such listener (allowlist agents on Kubernetes then reach no proxy of this replica).
   */
  egressClusterListen?: { host: string; port: number } | undefined;
  /**
   * Addresses and CIDR blocks no agent may reach through either egress proxy, whatever its
   * rules say (AGENT_PLATFORM_EGRESS_DENIED_RANGES, comma-separated): e.g. the Pod addresses
   * behind the database's Service. Added to what the platform finds itself (docs/security.md).
   */
  egressDeniedRanges: readonly string[];
  /** How often the egress proxies re-resolve the host names of the platform's own services to refuse them. */
  egressPlatformResolveIntervalMs: number;
  /** KUBERNETES_SERVICE_HOST (inside a Pod): the API server's address, refused by the egress proxies. */
  kubernetesServiceHost?: string | undefined;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Config> = {}): Readonly<Config> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = Env.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  if (e.AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS >= e.AGENT_PLATFORM_USAGE_MAX_STEP_MS) {
    // Every regular step would count as a clock jump and be cut short.
    throw new ConfigError(
      `invalid configuration: AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS (${e.AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS}) must be below AGENT_PLATFORM_USAGE_MAX_STEP_MS (${e.AGENT_PLATFORM_USAGE_MAX_STEP_MS})`,
    );
  }
  return Object.freeze({
    port: e.AGENT_PLATFORM_PORT,
    host: e.AGENT_PLATFORM_HOST,
    dataDir: path.resolve(e.AGENT_PLATFORM_DATA_DIR),
    databaseUrl: e.AGENT_PLATFORM_DATABASE_URL,
    adminToken: e.AGENT_PLATFORM_ADMIN_TOKEN,
    logLevel: e.AGENT_PLATFORM_LOG_LEVEL,
    resyncIntervalMs: e.AGENT_PLATFORM_RESYNC_INTERVAL_MS,
    reconcileConcurrency: e.AGENT_PLATFORM_RECONCILE_CONCURRENCY,
    createBacklogLimit: e.AGENT_PLATFORM_CREATE_BACKLOG_LIMIT,
    createBacklogWaitMs: e.AGENT_PLATFORM_CREATE_BACKLOG_WAIT_MS,
    startTimeoutMs: e.AGENT_PLATFORM_START_TIMEOUT_MS,
    stopTimeoutMs: e.AGENT_PLATFORM_STOP_TIMEOUT_MS,
    deleteTimeoutMs: e.AGENT_PLATFORM_DELETE_TIMEOUT_MS,
    deleteWaitMs: e.AGENT_PLATFORM_DELETE_WAIT_MS,
    stopGraceMs: e.AGENT_PLATFORM_STOP_GRACE_MS,
    bodyLimitBytes: e.AGENT_PLATFORM_BODY_LIMIT_BYTES,
    eventRetentionMs: e.AGENT_PLATFORM_EVENT_RETENTION_MS,
    eventPruneIntervalMs: e.AGENT_PLATFORM_EVENT_PRUNE_INTERVAL_MS,
    defaultCpu: e.AGENT_PLATFORM_DEFAULT_CPU,
    defaultMemory: e.AGENT_PLATFORM_DEFAULT_MEMORY,
    pidsLimit: e.AGENT_PLATFORM_PIDS_LIMIT,
    tmpSizeMiB: e.AGENT_PLATFORM_TMP_SIZE_MIB,
    dataSizeMiB: e.AGENT_PLATFORM_DATA_SIZE_MIB,
    nodeName: e.AGENT_PLATFORM_NODE_NAME,
    usageIntervalMs: e.AGENT_PLATFORM_USAGE_INTERVAL_MS,
    usageRetentionMs: e.AGENT_PLATFORM_USAGE_RETENTION_MS,
    metricsToken: e.AGENT_PLATFORM_METRICS_TOKEN,
    dockerHost: e.DOCKER_HOST,
    nodesFile: e.AGENT_PLATFORM_NODES_FILE,
    nodesJson: e.AGENT_PLATFORM_NODES,
    heartbeatIntervalMs: e.AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS,
    nodeGraceMs: e.AGENT_PLATFORM_NODE_GRACE_MS,
    nodeUnhealthyFailures: e.AGENT_PLATFORM_NODE_UNHEALTHY_FAILURES,
    nodeUnhealthyWindowMs: e.AGENT_PLATFORM_NODE_UNHEALTHY_WINDOW_MS,
    nodeUnhealthyCooldownMs: e.AGENT_PLATFORM_NODE_UNHEALTHY_COOLDOWN_MS,
    schedulerSampling: e.AGENT_PLATFORM_SCHEDULER_SAMPLING === 'true',
    schedulerPercentageOfNodesToScore: e.AGENT_PLATFORM_SCHEDULER_PERCENTAGE_OF_NODES_TO_SCORE,
    redisUrl: e.AGENT_PLATFORM_REDIS_URL,
    redisPrefix: e.AGENT_PLATFORM_REDIS_PREFIX,
    leaseTtlMs: e.AGENT_PLATFORM_LEASE_TTL_MS,
    replicaId: e.AGENT_PLATFORM_REPLICA_ID ?? `${hostname()}-${process.pid}`,
    rateLimitRps: e.AGENT_PLATFORM_RATE_LIMIT_RPS,
    rateLimitBurst: e.AGENT_PLATFORM_RATE_LIMIT_BURST,
    rateCard: e.AGENT_PLATFORM_RATE_CARD,
    rateCardFile: e.AGENT_PLATFORM_RATE_CARD_FILE,
    usageAccrualIntervalMs: e.AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS,
    sqliteCacheMiB: e.AGENT_PLATFORM_SQLITE_CACHE_MIB,
    heapGrowthPercent: e.AGENT_PLATFORM_HEAP_GROWTH_PERCENT,
    usageMaxStepMs: e.AGENT_PLATFORM_USAGE_MAX_STEP_MS,
    admissionIntervalMs: e.AGENT_PLATFORM_ADMISSION_INTERVAL_MS,
    streamKeyRecheckMs: e.AGENT_PLATFORM_STREAM_KEY_RECHECK_MS,
    minIsolation: e.AGENT_PLATFORM_MIN_ISOLATION,
    secretKey: e.AGENT_PLATFORM_SECRET_KEY,
    secretKeyFile: e.AGENT_PLATFORM_SECRET_KEY_FILE,
    secretKeysOld: e.AGENT_PLATFORM_SECRET_KEYS_OLD,
    egressProxyPort: e.AGENT_PLATFORM_EGRESS_PROXY_PORT,
    egressFirewall: e.AGENT_PLATFORM_EGRESS_FIREWALL === 'true',
    egressHostsFile: e.AGENT_PLATFORM_EGRESS_HOSTS_FILE,
    egressClusterListen: e.AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN,
    egressDeniedRanges: e.AGENT_PLATFORM_EGRESS_DENIED_RANGES ?? [],
    egressPlatformResolveIntervalMs: e.AGENT_PLATFORM_EGRESS_PLATFORM_RESOLVE_INTERVAL_MS,
    kubernetesServiceHost: e.KUBERNETES_SERVICE_HOST,
    ...overrides,
  });
}
