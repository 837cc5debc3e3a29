import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PHASES, type Phase } from '../domain/agent.js';
import { systemClock, type Clock } from '../domain/clock.js';
import { CADVISOR_METRIC_NAMES, renderCadvisorExposition } from './cadvisor-exposition.js';
import type { ControllerMetrics, ReconcileResult, SchedulingResult } from './controller-metrics.js';
import type { NodeMetricsSnapshot } from './node-status-poller.js';
import type { AgentContainerView } from './usage-sampler.js';

/** Agents of one tenant in one phase, as Store.countAgents returns them. */
export interface AgentCount {
  tenantId: string;
  phase: Phase;
  count: number;
}

/** Quota of one tenant for one resource; exported by the tenancy feature. */
export interface TenantQuotaSnapshot {
  tenantId: string;
  /** cpu_millicores | memory_bytes | gpus | agents */
  resource: string;
  used: number;
  limit: number;
}

/**
 * Where scrape-time values come from. Every member is optional (a missing source leaves
 * its metrics without series) and must be cheap: only countAgents may do I/O, and its
 * result is cached (see PlatformMetricsOptions.agentCountCacheMs).
 */
export interface PlatformMetricsSources {
  countAgents?: () => Promise<AgentCount[]>;
  /** Keys waiting in the work queue (Bus.depth()). */
  queueDepth?: () => number;
  /** Creates held at the API by backpressure now (CreateBackpressure.waiting()). */
  createsWaiting?: () => number;
  nodes?: () => readonly NodeMetricsSnapshot[];
  /** Whether this replica is ready (store and runtimes reachable). */
  ready?: () => boolean;
  /** Live agents with their last container sample (UsageSampler.current()). */
  containers?: () => readonly AgentContainerView[];
  tenantQuotas?: () => readonly TenantQuotaSnapshot[];
}

export interface PlatformMetricsOptions {
  /**
   * How long a store.countAgents result is reused, so that several scrapers (or a scrape
   * storm) cost one GROUP BY per window, not one per scrape.
   * @default 1_000
   */
  agentCountCacheMs?: number;
  /**
   * Node.js process metrics (CPU, memory, event loop lag, GC) with the agent_platform_ prefix.
   * @default true
   */
  defaultMetrics?: boolean;
  /** @default systemClock */
  clock?: Clock;
}

/** Metric name prefix of everything the platform itself exports (not the cAdvisor names). */
export const METRIC_PREFIX = 'agent_platform_';

const RESOURCES = ['cpu_millicores', 'memory_bytes', 'gpus'] as const;

/**
 * The platform's Prometheus metrics in a registry of its own (never prom-client's global
 * one, so two platforms in one process, as in tests, do not collide). Event metrics are
 * fed through the observe* methods; state metrics are read from the sources when scraped.
 */
export class PlatformMetrics implements ControllerMetrics {
  readonly registry = new Registry();
  private sources: PlatformMetricsSources;
  private readonly clock: Clock;
  private readonly agentCountCacheMs: number;
  private agentCountCache: { atMs: number; value: Promise<AgentCount[]> } | undefined;
  private cadvisorCache: { of: readonly AgentContainerView[]; text: string } | undefined;

  private readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  private readonly schedulingAttempts: Counter<'result'>;
  private readonly schedulingDuration: Histogram<'result'>;
  private readonly reconcileDuration: Histogram<'result'>;
  private readonly createWait: Histogram;
  private readonly runtimeDuration: Histogram<'driver' | 'operation'>;
  private readonly runtimeErrors: Counter<'driver' | 'operation'>;
  /** OOM kills by agent, with the node it ran on when last killed (for agents that ended). */
  private readonly oomKills = new Map<string, { tenantId: string; node: string; count: number }>();

  constructor(sources: PlatformMetricsSources = {}, options: PlatformMetricsOptions = {}) {
    this.sources = { ...sources };
    this.clock = options.clock ?? systemClock;
    this.agentCountCacheMs = options.agentCountCacheMs ?? 1_000;
    const registers = [this.registry];
    // Arrow functions below capture `self` because prom-client calls collect() with the metric as `this`.
    const self = this;

    this.httpDuration = new Histogram({
      name: 'agent_platform_http_request_duration_seconds',
      help: 'HTTP requests by method, route pattern and status code, and how long they took.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.schedulingAttempts = new Counter({
      name: 'agent_platform_scheduling_attempts_total',
      help: 'Placement attempts by result (scheduled | unschedulable).',
      labelNames: ['result'],
      registers,
    });
    this.schedulingDuration = new Histogram({
      name: 'agent_platform_scheduling_duration_seconds',
      help: 'Time the placer took to choose a node (or find none), by result.',
      labelNames: ['result'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'agent_platform_reconcile_duration_seconds',
      help: 'Reconciles of one agent by result (success | conflict | error), including any container create and start.',
      labelNames: ['result'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.createWait = new Histogram({
      name: 'agent_platform_create_backpressure_wait_seconds',
      help: 'How long creates that found the controllers behind waited at the API before going ahead.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: 'agent_platform_create_backpressure_waiting',
      help: 'Creates held at the API now because the controllers are behind.',
      registers,
      collect() {
        const waiting = self.sources.createsWaiting;
        if (waiting) this.set(waiting());
      },
    });
    new Gauge({
      name: 'agent_platform_workqueue_depth',
      help: 'Reconcile keys waiting in the work queue, due or delayed.',
      registers,
      collect() {
        const depth = self.sources.queueDepth;
        if (depth) this.set(depth());
      },
    });
    this.runtimeDuration = new Histogram({
      name: 'agent_platform_runtime_operation_duration_seconds',
      help: 'Runtime driver calls by driver and operation, successful or not.',
      labelNames: ['driver', 'operation'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.runtimeErrors = new Counter({
      name: 'agent_platform_runtime_operation_errors_total',
      help: 'Runtime driver calls that failed, by driver and operation.',
      labelNames: ['driver', 'operation'],
      registers,
    });
    new Counter({
      name: 'agent_platform_agent_oom_kills_total',
      help: 'Agent containers killed for exceeding their memory limit, as the controller observed them.',
      // node as on agent_platform_agent_restarts_total and the cAdvisor series, so kills can
      // be summed per node (a node short of memory) and joined with the container series.
      labelNames: ['agent', 'tenant', 'node'],
      registers,
      collect() {
        // Live agents get a 0 series before their first kill, so increase() sees 0 -> 1; a
        // series appearing at 1 would show no increase. Agents that ended keep their count
        // only if they were ever killed (bounded by the agents that were).
        this.reset();
        const live = new Set<string>();
        for (const a of self.sources.containers?.() ?? []) {
          live.add(a.agentId);
          this.inc({ agent: a.agentId, tenant: a.tenantId, node: a.node }, self.oomKills.get(a.agentId)?.count ?? 0);
        }
        for (const [agentId, k] of self.oomKills) if (!live.has(agentId)) this.inc({ agent: agentId, tenant: k.tenantId, node: k.node }, k.count);
      },
    });

    new Gauge({
      name: 'agent_platform_agents',
      help: 'Agents by tenant and phase.',
      labelNames: ['tenant', 'phase'],
      registers,
      async collect() {
        const counts = await self.agentCounts();
        this.reset();
        if (!counts) return;
        // Every phase of every tenant seen gets a series, so a phase that empties shows 0
        // instead of vanishing (a vanished series keeps its last value in some panels).
        const tenants = new Set(counts.map((c) => c.tenantId));
        for (const tenant of tenants) for (const phase of PHASES) this.set({ tenant, phase }, 0);
        for (const c of counts) this.set({ tenant: c.tenantId, phase: c.phase }, c.count);
      },
    });
    new Gauge({
      name: 'agent_platform_ready',
      help: '1 when this replica can serve: the store and every runtime answered the last check.',
      registers,
      collect() {
        const ready = self.sources.ready;
        if (ready) this.set(ready() ? 1 : 0);
      },
    });

    const nodeGauge = (name: string, help: string, pick: (n: NodeMetricsSnapshot) => Record<(typeof RESOURCES)[number], number>): void => {
      new Gauge({
        name,
        help,
        labelNames: ['node', 'resource'],
        registers,
        collect() {
          this.reset();
          for (const n of self.sources.nodes?.() ?? []) {
            const values = pick(n);
            for (const resource of RESOURCES) this.set({ node: n.node, resource }, values[resource]);
          }
        },
      });
    };
    const asResources = (r: NodeMetricsSnapshot['capacity']): Record<(typeof RESOURCES)[number], number> => ({
      cpu_millicores: r.cpuMillicores,
      memory_bytes: r.memoryBytes,
      gpus: r.gpus,
    });
    nodeGauge('agent_platform_node_capacity', 'Schedulable capacity of a node by resource (cpu_millicores | memory_bytes | gpus).', (n) => asResources(n.capacity));
    nodeGauge('agent_platform_node_allocated', 'Requests of live agents bound to a node, by resource.', (n) => asResources(n.allocated));
    nodeGauge('agent_platform_node_free', 'Capacity minus allocation of a node, by resource (negative when overcommitted).', (n) => ({
      cpu_millicores: n.capacity.cpuMillicores - n.allocated.cpuMillicores,
      memory_bytes: n.capacity.memoryBytes - n.allocated.memoryBytes,
      gpus: n.capacity.gpus - n.allocated.gpus,
    }));
    new Gauge({
      name: 'agent_platform_node_ready',
      help: '1 when the node answered its last health check, else 0.',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of self.sources.nodes?.() ?? []) this.set({ node: n.node }, n.ready ? 1 : 0);
      },
    });
    new Gauge({
      name: 'agent_platform_node_simulated',
      help: '1 for in-memory nodes of the simulated runtime (their capacity is not real), else 0.',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        for (const n of self.sources.nodes?.() ?? []) this.set({ node: n.node }, n.simulated ? 1 : 0);
      },
    });

    const quotaGauge = (name: string, help: string, pick: (q: TenantQuotaSnapshot) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['tenant', 'resource'],
        registers,
        collect() {
          this.reset();
          for (const q of self.sources.tenantQuotas?.() ?? []) this.set({ tenant: q.tenantId, resource: q.resource }, pick(q));
        },
      });
    };
    quotaGauge('agent_platform_tenant_quota_used', 'Quota a tenant uses, by resource (exported by the tenancy feature).', (q) => q.used);
    quotaGauge('agent_platform_tenant_quota_limit', 'Quota limit of a tenant, by resource (exported by the tenancy feature).', (q) => q.limit);

    new Counter({
      name: 'agent_platform_agent_restarts_total',
      help: 'Restarts of a live agent (status.restarts).',
      labelNames: ['agent', 'tenant', 'node'],
      registers,
      collect() {
        this.reset();
        for (const a of self.sources.containers?.() ?? []) this.inc({ agent: a.agentId, tenant: a.tenantId, node: a.node }, a.restarts);
      },
    });

    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
  }

  /** Adds or replaces sources; wiring sets them once the parts they read exist. */
  setSources(sources: PlatformMetricsSources): void {
    this.sources = { ...this.sources, ...sources };
    this.agentCountCache = undefined;
  }

  observeHttpRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds);
  }

  observeScheduling(result: SchedulingResult, seconds: number): void {
    this.schedulingAttempts.inc({ result });
    this.schedulingDuration.observe({ result }, seconds);
  }

  observeReconcile(result: ReconcileResult, seconds: number): void {
    this.reconcileDuration.observe({ result }, seconds);
  }

  observeCreateWait(seconds: number): void {
    this.createWait.observe(seconds);
  }

  observeRuntimeOperation(driver: string, operation: string, seconds: number, failed: boolean): void {
    this.runtimeDuration.observe({ driver, operation }, seconds);
    if (failed) this.runtimeErrors.inc({ driver, operation });
  }

  /**
   * Counts one OOM kill of an agent. `node` defaults to the node the agent's live view (the
   * containers source) names, so callers that only have an event (which carries no node)
   * need not look it up; the scan happens once per kill, which is rare.
   */
  countOomKill(agentId: string, tenantId: string, node?: string): void {
    const on = node ?? this.sources.containers?.().find((a) => a.agentId === agentId)?.node ?? this.oomKills.get(agentId)?.node ?? '';
    const k = this.oomKills.get(agentId) ?? { tenantId, node: on, count: 0 };
    k.node = on;
    k.count += 1;
    this.oomKills.set(agentId, k);
  }

  /**
   * The exposition in Prometheus text format 0.0.4: the registry, then the per-container
   * cAdvisor-named metrics (written apart from prom-client because they carry sample
   * timestamps, see renderCadvisorExposition), rendered once per sampler round.
   */
  async metrics(): Promise<string> {
    const own = await this.registry.metrics();
    const views = this.sources.containers?.() ?? [];
    if (this.cadvisorCache?.of !== views) this.cadvisorCache = { of: views, text: renderCadvisorExposition(views) };
    return `${own.endsWith('\n') ? own : `${own}\n`}${this.cadvisorCache.text}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Every metric name /metrics can expose as a Prometheus series name (histograms with
   * their _bucket, _sum and _count series; the cAdvisor names), for dashboard and alert checks.
   */
  seriesNames(): string[] {
    const names: string[] = [];
    for (const m of this.registry.getMetricsAsArray() as unknown as { name: string; type?: string }[]) {
      names.push(m.name);
      if (m.type === 'histogram') names.push(`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`);
      if (m.type === 'summary') names.push(`${m.name}_sum`, `${m.name}_count`);
    }
    names.push(...CADVISOR_METRIC_NAMES);
    return names;
  }

  private async agentCounts(): Promise<AgentCount[] | undefined> {
    const count = this.sources.countAgents;
    if (!count) return undefined;
    const now = this.clock.now();
    if (!this.agentCountCache || now - this.agentCountCache.atMs >= this.agentCountCacheMs) {
      this.agentCountCache = { atMs: now, value: count() };
    }
    try {
      return await this.agentCountCache.value;
    } catch {
      // A store outage shows as no series (and agent_platform_ready 0), not a failed scrape.
      this.agentCountCache = undefined;
      return undefined;
    }
  }
}
