import { DomainError } from '../../domain/errors.js';
import { AGENT_CONTAINER_NAME } from './kube-names.js';
import type { KubeObjectMeta } from './kube-types.js';

/**
 * Cluster-wide list of PodMetrics (metrics.k8s.io/v1beta1, served by metrics-server or any
 * other implementation of the resource metrics API). A cluster without it answers 404.
 */
export const POD_METRICS_PATH = '/apis/metrics.k8s.io/v1beta1/pods';

/** One container of a PodMetrics, as on the wire. */
export interface KubeContainerMetrics {
  name: string;
  /** Quantities: cpu in cores ("250m", "12345n"), memory = working set in bytes ("64Mi", "65536Ki"). */
  usage: { cpu?: string; memory?: string; [resource: string]: string | undefined };
}

/** metrics.k8s.io/v1beta1 PodMetrics, as on the wire. */
export interface KubePodMetrics {
  metadata: KubeObjectMeta;
  /** End of the measurement window (RFC 3339). */
  timestamp: string;
  /** Length of the window the CPU rate is averaged over, as a Go duration ("15s", "10.042s", "1m0s"). */
  window: string;
  containers: KubeContainerMetrics[];
}

/** The usage of one agent Pod, as the resource metrics API reports it. */
export interface PodUsageSample {
  podName: string;
  namespace: string;
  /** End of the window the figures describe (ms epoch), the server's clock. */
  timestampMs: number;
  /** Length of that window. */
  windowMs: number;
  /**
   * Average CPU of the agent container over the window, in cores. A rate, not a counter:
   * the API keeps no cumulative CPU time.
   */
  cpuCores: number;
  /** Working set of the agent container (what the kubelet evicts on), in bytes. */
  memoryWorkingSetBytes: number;
  /** The agent container's memory limit from the Pod spec, or null when unknown or unlimited. */
  memoryLimitBytes: number | null;
}

const QUANTITY = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$/;
const MULTIPLIER: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/**
 * A Kubernetes resource.Quantity as a number in base units (cores, bytes): every suffix the
 * API may write ("12345n", "250m", "64Mi", "1.5G") and the decimal-exponent form ("1e3").
 * Unlike src/domain/quantity.ts (user input, rounded up to millicores and MiB) this keeps
 * the fraction: nanocores are what metrics-server reports.
 * @throws DomainError KUBERNETES_BAD_QUANTITY when the string is not a quantity
 */
export function parseKubeQuantity(value: string): number {
  const m = QUANTITY.exec(value.trim());
  if (!m) throw new DomainError('KUBERNETES_BAD_QUANTITY', `"${value}" is not a Kubernetes quantity`, { value });
  const n = Number(m[1]);
  if (m[2] !== undefined) return n * 10 ** Number(m[2]);
  return n * MULTIPLIER[m[3] ?? '']!;
}

const DURATION_PART = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)/gy;
const DURATION_UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A Go time.Duration string ("15s", "10.042s", "1m0.5s", "250ms", "0s") in milliseconds.
 * @throws DomainError KUBERNETES_BAD_DURATION when the string is not a duration
 */
export function parseGoDurationMs(value: string): number {
  const text = value.trim();
  if (text === '0') return 0;
  DURATION_PART.lastIndex = 0;
  let totalMs = 0;
  let consumed = 0;
  for (let m = DURATION_PART.exec(text); m; m = DURATION_PART.exec(text)) {
    totalMs += Number(m[1]) * DURATION_UNIT_MS[m[2]!]!;
    consumed = DURATION_PART.lastIndex;
  }
  if (consumed === 0 || consumed !== text.length) throw new DomainError('KUBERNETES_BAD_DURATION', `"${value}" is not a Go duration`, { value });
  return totalMs;
}

/**
 * The agent container's figures out of one PodMetrics; undefined when the Pod has no
 * container named `containerName` (not an agent Pod, or not scraped yet). Other containers
 * (sidecars a mesh injects) are left out: the agent's limits bound only its own container.
 * @throws DomainError KUBERNETES_BAD_METRICS when a figure cannot be read
 */
export function podUsageFromMetrics(item: KubePodMetrics, memoryLimitBytes: number | null = null, containerName = AGENT_CONTAINER_NAME): PodUsageSample | undefined {
  const container = item.containers?.find((c) => c.name === containerName);
  if (!container) return undefined;
  const where = `PodMetrics ${item.metadata.namespace ?? ''}/${item.metadata.name}`;
  const read = (what: string, parse: () => number): number => {
    let n: number;
    try {
      n = parse();
    } catch (err) {
      throw new DomainError('KUBERNETES_BAD_METRICS', `${where}: ${what}: ${(err as Error).message}`, { pod: item.metadata.name, namespace: item.metadata.namespace });
    }
    if (!Number.isFinite(n) || n < 0) throw new DomainError('KUBERNETES_BAD_METRICS', `${where}: ${what} is ${n}`, { pod: item.metadata.name, namespace: item.metadata.namespace });
    return n;
  };
  const timestampMs = read('timestamp', () => {
    const ms = Date.parse(item.timestamp);
    if (Number.isNaN(ms)) throw new Error(`"${item.timestamp}" is not RFC 3339`);
    return ms;
  });
  return {
    podName: item.metadata.name,
    namespace: item.metadata.namespace ?? '',
    timestampMs,
    windowMs: read('window', () => parseGoDurationMs(item.window ?? '')),
    cpuCores: read('cpu', () => parseKubeQuantity(container.usage.cpu ?? '0')),
    memoryWorkingSetBytes: Math.round(read('memory', () => parseKubeQuantity(container.usage.memory ?? '0'))),
    memoryLimitBytes,
  };
}
