import { systemClock, type Clock } from '../domain/clock.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import { KubeApiError } from '../runtime/kubernetes/kube-client.js';
import type { PodUsageSample } from '../runtime/kubernetes/pod-metrics.js';
import type { ContainerUsage } from './cgroup/container-usage.js';
import type { UsageCollector } from './usage-sampler.js';

/** Where the collector reads Pod usage; KubernetesRuntime.podMetrics is the real one. */
export interface PodMetricsSource {
  /**
   * Usage of the platform's agent Pods, one entry per Pod the metrics API has figures for.
   * Rejects with a KubeApiError of httpStatus 404 when the cluster does not serve
   * metrics.k8s.io; any other rejection is a failure of a served API.
   */
  podMetrics(signal?: AbortSignal): Promise<PodUsageSample[]>;
}

export interface KubernetesUsageCollectorOptions {
  source: PodMetricsSource;
  /** Named in log lines. */
  nodeId?: string | undefined;
  /**
   * How long to wait before asking again once the cluster answered 404 (no metrics.k8s.io:
   * metrics-server not installed). Shorter notices a newly installed metrics-server sooner;
   * each ask costs one 404 from the API server.
   * @default 300_000
   */
  absentRetryMs?: number | undefined;
  /**
   * How long to wait after any other failure (503: the APIService is registered but
   * metrics-server is down; 403: RBAC does not grant list on pods.metrics.k8s.io; transport
   * errors). Agents on the node show no usage for that long even if the failure was a blip.
   * @default 60_000
   */
  failureRetryMs?: number | undefined;
  /** @default systemClock */
  clock?: Clock | undefined;
  /** @default silentLogger */
  logger?: Logger | undefined;
}

/** What the collector knows about the cluster's metrics API. */
export type MetricsApiAvailability = 'unknown' | 'available' | 'absent' | 'failing';

interface Integrated {
  cpuUsageSeconds: number;
  lastSampleMs: number;
}

/**
 * The usage collector of a Kubernetes node (one cluster): one cluster-wide list of
 * PodMetrics from metrics.k8s.io per round, whatever the number of agents; container ids
 * are Pod names.
 *
 * **The CPU counter is integrated, not measured.** The metrics API reports CPU as a rate
 * (cores averaged over its window, about 15 s with metrics-server), not as cumulative CPU
 * time. The rest of the pipeline (the sampler's rates, cAdvisor's
 * container_cpu_usage_seconds_total, the usage ledger) wants a counter, so each sample adds
 * `rate x seconds since this container's previous sample` to a per-container counter kept
 * here. It starts at 0 at the container's first sample in this process, never goes down
 * while the container keeps being asked for, and is forgotten when the sampler stops asking
 * (the agent no longer runs): a restarted agent's counter starts at 0 again, which the
 * sampler and the meter read as a reset. Over a gap (the API failing, the Pod not yet
 * scraped) the next rate is assumed for the whole gap. What it costs: the rate the sampler
 * derives is the API's latest rate (not a rate of its own over the sampling interval), and
 * the counter follows true CPU time only as closely as window averages do: a burst inside a
 * window the collector saw is counted (averaged), one in a window it never saw is not.
 *
 * Memory is the working set (the only memory figure of the API); `memoryUsageBytes` carries
 * the same number (page cache is not reported). CFS throttling counters are 0 and pids and
 * OOM kills null: the API does not report them.
 *
 * The API is optional in a cluster. A 404 marks it absent: one info line, no samples, and
 * one more ask every `absentRetryMs`. Other failures mark it failing: one warning per
 * streak, asked again after `failureRetryMs`. collect() rejects only when its own signal
 * aborts, so the sampler logs nothing per round for a cluster without metrics.
 */
export class KubernetesUsageCollector implements UsageCollector {
  private readonly source: PodMetricsSource;
  private readonly absentRetryMs: number;
  private readonly failureRetryMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private state: MetricsApiAvailability = 'unknown';
  private retryAtMs = Number.NEGATIVE_INFINITY;
  private readonly counters = new Map<string, Integrated>();

  constructor(options: KubernetesUsageCollectorOptions) {
    this.source = options.source;
    this.absentRetryMs = options.absentRetryMs ?? 300_000;
    this.failureRetryMs = options.failureRetryMs ?? 60_000;
    this.clock = options.clock ?? systemClock;
    const logger = options.logger ?? silentLogger;
    this.logger = options.nodeId ? logger.child({ node: options.nodeId }) : logger;
  }

  /** What the last ask found; "unknown" before the first. */
  get availability(): MetricsApiAvailability {
    return this.state;
  }

  async collect(containerIds: readonly string[], signal?: AbortSignal): Promise<Map<string, ContainerUsage>> {
    const out = new Map<string, ContainerUsage>();
    if (containerIds.length === 0 || this.clock.now() < this.retryAtMs) return out;
    let samples: PodUsageSample[];
    try {
      samples = await this.source.podMetrics(signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      this.failed(err);
      return out;
    }
    this.succeeded();
    const sampledAtMs = this.clock.now();
    const byPod = new Map(samples.map((s) => [s.podName, s]));
    const wanted = new Set(containerIds);
    for (const id of this.counters.keys()) if (!wanted.has(id)) this.counters.delete(id);
    for (const id of containerIds) {
      const s = byPod.get(id);
      if (!s) continue;
      const previous = this.counters.get(id);
      const elapsedSeconds = previous ? Math.max(0, sampledAtMs - previous.lastSampleMs) / 1000 : 0;
      const cpuUsageSeconds = (previous?.cpuUsageSeconds ?? 0) + s.cpuCores * elapsedSeconds;
      this.counters.set(id, { cpuUsageSeconds, lastSampleMs: sampledAtMs });
      out.set(id, {
        containerId: id,
        source: 'metrics-api',
        timestampMs: sampledAtMs,
        cpuUsageSeconds,
        memoryUsageBytes: s.memoryWorkingSetBytes,
        memoryWorkingSetBytes: s.memoryWorkingSetBytes,
        memoryLimitBytes: s.memoryLimitBytes,
        cpuCfsPeriods: 0,
        cpuCfsThrottledPeriods: 0,
        cpuCfsThrottledSeconds: 0,
        pids: null,
        oomKills: null,
      });
    }
    return out;
  }

  private failed(err: unknown): void {
    const absent = err instanceof KubeApiError && err.httpStatus === 404;
    const next: MetricsApiAvailability = absent ? 'absent' : 'failing';
    const retryMs = absent ? this.absentRetryMs : this.failureRetryMs;
    this.retryAtMs = this.clock.now() + retryMs;
    if (next === this.state) {
      this.logger.debug({ err, retryMs }, 'metrics.k8s.io still unavailable');
      return;
    }
    this.state = next;
    if (absent) {
      this.logger.info({ retryMs }, 'the cluster does not serve metrics.k8s.io (no metrics-server): agents on this node have no measured usage until it does');
    } else {
      this.logger.warn({ err, retryMs }, 'reading usage from metrics.k8s.io failed: agents on this node have no measured usage until it answers');
    }
  }

  private succeeded(): void {
    if (this.state === 'available') return;
    if (this.state !== 'unknown') this.logger.info({ was: this.state }, 'metrics.k8s.io answers again: measuring usage');
    else this.logger.debug({}, 'metrics.k8s.io answers: measuring usage');
    this.state = 'available';
    this.retryAtMs = Number.NEGATIVE_INFINITY;
  }
}
