import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubernetesObject } from '@kubernetes/client-node';
import { NotFoundError } from '../../domain/errors.js';
import { parseCpuMillicores, parseMemoryMiB } from '../../domain/quantity.js';
import {
  containerName,
  INSTANCE_LABEL,
  MANAGED_LABEL,
  type ContainerSpec,
  type LogLine,
  type LogOptions,
  type NodeInfo,
  type ObservedContainer,
  type Runtime,
  type RuntimeEvent,
} from '../runtime.js';
import { isKubeStatus, KubeApiError, KubeClient, type KubeClientOptions } from './kube-client.js';
import { AGENT_CONTAINER_NAME, START_GATE, TIMEOUT_ANNOTATION, tenantNamespace } from './kube-names.js';
import type { KubeList, KubeNode, KubePod } from './kube-types.js';
import { buildNamespaceManifests, egressProxyUrl, exposedObjectNames, LIMIT_RANGE_NAME, QUOTA_NAME, type EgressProxyTarget, type ExposedAgent, type TenantQuota } from './namespace-manifests.js';
import { buildPodManifest, placementFromPod, podDeadlineSeconds, type PodManifestOptions } from './pod-manifest.js';
import { parseKubeQuantity, POD_METRICS_PATH, podUsageFromMetrics, type KubePodMetrics, type PodUsageSample } from './pod-metrics.js';
import { PodInformer } from './pod-informer.js';
import { parseTimestampedLogLine, sinceTimeParam, tailMerged } from './pod-log-lines.js';
import { isHeld, isPodFinished, observedFromPod, podTransitionEvents } from './pod-status.js';
import { linkSignals } from '../../domain/linked-signal.js';
import type { NodeAffinity } from '../../domain/affinity.js';
import type { AgentEndpoint, Toleration } from '../../domain/agent.js';
import type { GpuDevice, Taint } from '../../domain/node.js';

/** A node as the platform's own scheduler sees it in binding mode. */
export interface KubeNodeSnapshot {
  name: string;
  labels: Record<string, string>;
  /** The Node's taints (`spec.taints`); NoSchedule and NoExecute keep untolerating Pods off. */
  taints: Taint[];
  ready: boolean;
  unschedulable: boolean;
  /** `pods` is the kubelet's maxPods (allocatable "pods"); 0 when the Node does not say. */
  allocatable: { cpuMillicores: number; memoryMiB: number; gpu: number; pods: number };
  /** Sum of the requests of the Pods bound to the node that have not ended. */
  requested: { cpuMillicores: number; memoryMiB: number; gpu: number; pods: number };
}

/** What the platform's scheduler is asked to place, in binding mode. */
export interface KubePlacementRequest {
  podName: string;
  namespace: string;
  agentId: string;
  cpuMillicores: number;
  memoryMiB: number;
  gpu: number;
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
  /** Required and preferred node affinity of the Pod; empty: none. */
  affinity: NodeAffinity;
}

/**
 * Binding mode: the Pods carry this schedulerName (kube-scheduler ignores them) and the
 * runtime binds each one through the pods/binding subresource to the node `chooseNode`
 * returns. Undefined from chooseNode leaves the Pod Pending (start() then waits).
 */
export interface KubeBindingOptions {
  schedulerName: string;
  chooseNode(request: KubePlacementRequest, nodes: KubeNodeSnapshot[]): string | undefined;
}

/**
 * What the platform's agent controller tells the runtime of a cluster it drives; see
 * KubernetesRuntime.attachController.
 */
export interface KubeControllerLink {
  /**
   * AGENT_PLATFORM_START_TIMEOUT_MS: the default deadline margin of the Pods covers it (see
   * PodManifestOptions.deadlineMarginSeconds), unless `pod.startTimeoutSeconds` or
   * `pod.deadlineMarginSeconds` is set.
   */
  startTimeoutMs: number;
  /**
   * The agent's container spec as a create would get it now: the controller's spec completed
   * by the sandbox (egress mode, proxy URL, secrets, isolation class). A restart builds its new
   * Pod from it. Undefined when the agent record is gone. May throw what the sandbox throws
   * (SandboxSetupError), which start() passes on before touching the ended Pod.
   */
  containerSpecOf(agentId: string, signal?: AbortSignal): Promise<ContainerSpec | undefined>;
}

/** User options of the Kubernetes adapter; one instance drives one cluster (one platform node). */
export interface KubernetesRuntimeOptions extends KubeClientOptions {
  /** @default `k8s-<context name>` */
  nodeId?: string | undefined;
  /**
   * Platform installation id: written as a label, and list()/watch() see only Pods with it.
   * @default undefined (every managed Pod)
   */
  instanceId?: string | undefined;
  /** Pod settings: terminationGraceSeconds, imagePullPolicy, tmpMedium, uid/gid. */
  pod?: Omit<PodManifestOptions, 'namespace' | 'held' | 'schedulerName' | 'instanceId'> | undefined;
  /** Binding mode; see KubeBindingOptions. @default undefined (kube-scheduler places Pods) */
  binding?: KubeBindingOptions | undefined;
  /**
   * "merged": one request per log read; every line is reported as stdout (the log
   * endpoint mixes the streams). "split": stdout and stderr read separately with the
   * `stream` parameter, which needs Kubernetes 1.32+ with the PodLogsQuerySplitStreams
   * feature gate; `tail` then reads both streams whole and cuts here.
   * @default "merged"
   */
  logStreams?: 'merged' | 'split' | undefined;
  /**
   * How long start() waits for the container to run (or end, or fail to start) before
   * returning anyway; the controller's own start deadline still applies.
   * @default 60_000
   */
  startWaitMs?: number | undefined;
  /** Tenant namespace contents created on first use of a tenant. */
  namespaces?:
    | {
        /**
         * Quota of a tenant, mirrored into ResourceQuota and LimitRange when its namespace is
         * first ensured; undefined: none. May be async (the platform reads it from its store).
         */
        quotaFor?: ((tenantId: string, signal?: AbortSignal) => TenantQuota | undefined | Promise<TenantQuota | undefined>) | undefined;
        /** The egress proxy allowlist agents may reach; undefined: no egress at all. */
        egressProxy?: EgressProxyTarget | undefined;
      }
    | undefined;
  /** @default 250 */
  watchReconnectInitialMs?: number | undefined;
  /** @default 5_000 */
  watchReconnectMaxMs?: number | undefined;
  /** Server-side timeout of one watch request. @default 300 */
  watchTimeoutSeconds?: number | undefined;
  /** Errors the informer retries on its own (for logging). */
  onWatchError?: ((err: unknown) => void) | undefined;
}

/** Creates the Kubernetes runtime; the platform's node pool calls this for `{driver: "kubernetes"}`. */
export const createKubernetesRuntime = (options: KubernetesRuntimeOptions = {}): KubernetesRuntime => new KubernetesRuntime(options);

const WAIT_GONE_MS = 30_000;
/**
 * Namespaces of Pods the informer saw go away, kept for a later remove() (the agent's Service
 * lives there). Bounded: an entry is dropped by remove(), and the oldest go past this many.
 */
const DEPARTED_PODS_MAX = 10_000;
const podSummary = (pod: KubePod | undefined): string => (pod ? `${pod.metadata.namespace}/${pod.metadata.name} (${pod.status?.phase ?? 'no status'})` : 'absent');

/**
 * Runtime adapter for a whole Kubernetes cluster, seen by the platform as one node.
 *
 * Each agent is one Pod named `containerName(agentId)` in the tenant's namespace
 * (`ap-<tenant>`, created on demand with its quota and network policies); the container
 * id the platform stores is that Pod name. Mapping of the Runtime verbs:
 *
 * - create: the Pod, held by a scheduling gate (so it is "created", not started);
 *   409 AlreadyExists means a retried or racing create, and returns the same id.
 * - start: removes the gate (binding mode: then binds); an ended Pod cannot run again,
 *   so start of an exited container deletes the Pod and creates it anew under the same
 *   name; its earlier logs go with it (use a cluster log sink to keep them).
 * - stop: lowers `activeDeadlineSeconds` to 1, so the kubelet stops the Pod (SIGTERM,
 *   SIGKILL after the Pod's terminationGracePeriodSeconds, fixed at create: `graceMs` is
 *   not used) and the Pod stays, with its exit code and logs, as Docker's does.
 * - remove: deletes the Pod with grace period 0.
 * - inspect, list, watch: read a label-selected informer over all namespaces.
 * - logs: the pods/log endpoint with timestamps.
 *
 * A missing image is only found by the kubelet, after start: inspect then reports state
 * "created" with `error` "ImageNotFound: ...", and create never throws
 * ImageNotFoundError.
 */
export class KubernetesRuntime implements Runtime {
  readonly driver = 'kubernetes';
  readonly nodeId: string;
  readonly client: KubeClient;
  private readonly informer: PodInformer;
  private readonly options: KubernetesRuntimeOptions;
  private readonly labelSelector: string;
  private readonly startWaitMs: number;
  private readonly ensuredNamespaces = new Map<string, Promise<void>>();
  /** Uids of Pods being replaced by a restart: their deletion is not a "destroy". */
  private readonly replacing = new Set<string>();
  private readonly closing = new AbortController();
  /** Pod name -> namespace of Pods gone from the informer and not yet remove()d. */
  private readonly departed = new Map<string, string>();
  private controller: KubeControllerLink | undefined;

  constructor(options: KubernetesRuntimeOptions = {}) {
    this.options = options;
    this.client = KubeClient.load(options);
    this.nodeId = options.nodeId ?? `k8s-${this.client.contextName}`;
    this.startWaitMs = options.startWaitMs ?? 60_000;
    const selector = [`${MANAGED_LABEL}=true`];
    if (options.instanceId) selector.push(`${INSTANCE_LABEL}=${options.instanceId}`);
    this.labelSelector = selector.join(',');
    this.informer = new PodInformer({
      client: this.client,
      labelSelector: this.labelSelector,
      reconnectInitialMs: options.watchReconnectInitialMs,
      reconnectMaxMs: options.watchReconnectMaxMs,
      watchTimeoutSeconds: options.watchTimeoutSeconds,
      onError: options.onWatchError,
    });
    this.informer.onChange((prev, next) => {
      if (next) this.departed.delete(next.metadata.name);
      else if (prev?.metadata.namespace) {
        this.departed.delete(prev.metadata.name);
        this.departed.set(prev.metadata.name, prev.metadata.namespace);
        if (this.departed.size > DEPARTED_PODS_MAX) this.departed.delete(this.departed.keys().next().value!);
      }
    });
  }

  /**
   * Connects the runtime to the platform's controller, which is built after the node pool
   * (platform.ts calls this once): restarts then build their new Pod from the agent's current
   * spec (a network mode changed while the agent was stopped takes effect), and the Pods'
   * deadline margin follows the controller's start timeout. Without it (the runtime used on
   * its own) a restart copies the ended Pod.
   */
  attachController(link: KubeControllerLink): void {
    this.controller = link;
  }

  /** The informer, for tests (relist counts) and diagnostics. */
  get podInformer(): PodInformer {
    return this.informer;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.client.request('/version', { signal });
  }

  async info(signal?: AbortSignal): Promise<NodeInfo> {
    const [version, nodes] = await Promise.all([
      this.client.request<{ gitVersion?: string }>('/version', { signal }),
      this.client.request<KubeList<KubeNode>>('/api/v1/nodes', { signal }),
    ]);
    const snapshots = nodes.items.map((n) => nodeSnapshot(n));
    const usable = snapshots.filter((n) => n.ready && !n.unschedulable);
    const usableNames = new Set(usable.map((n) => n.name));
    const first = nodes.items[0]?.status?.nodeInfo;
    const isolationClasses = ['runc'];
    try {
      const classes = await this.client.request<KubeList<KubernetesObject>>('/apis/node.k8s.io/v1/runtimeclasses', { signal });
      if (classes.items.some((c) => c.metadata?.name === 'gvisor')) isolationClasses.push('gvisor');
    } catch (err) {
      // No permission to list RuntimeClasses, or an old cluster: runc only.
      if (!(err instanceof KubeApiError) || err.httpStatus === 0) throw err;
    }
    return {
      cpuMillicores: usable.reduce((sum, n) => sum + n.allocatable.cpuMillicores, 0),
      memoryMiB: usable.reduce((sum, n) => sum + n.allocatable.memoryMiB, 0),
      os: first?.operatingSystem ?? 'linux',
      arch: first?.architecture ?? 'amd64',
      runtimeVersion: `kubernetes ${version.gitVersion ?? 'unknown'}`,
      isolationClasses,
      gpus: gpuSlots(nodes.items.filter((n) => usableNames.has(n.metadata.name))),
    };
  }

  /**
   * Nodes with their allocatable resources (GPUs included) and what the Pods bound to
   * them request: the input of binding mode, also useful for capacity reporting.
   */
  async nodeSnapshots(signal?: AbortSignal): Promise<KubeNodeSnapshot[]> {
    const [nodes, pods] = await Promise.all([
      this.client.request<KubeList<KubeNode>>('/api/v1/nodes', { signal }),
      this.client.request<KubeList<KubePod>>('/api/v1/pods', { query: { fieldSelector: 'spec.nodeName!=' }, signal }),
    ]);
    const snapshots = new Map(nodes.items.map((n) => [n.metadata.name, nodeSnapshot(n)]));
    for (const pod of pods.items) {
      const node = pod.spec.nodeName ? snapshots.get(pod.spec.nodeName) : undefined;
      if (!node || isPodFinished(pod)) continue;
      const r = podRequests(pod);
      node.requested.cpuMillicores += r.cpuMillicores;
      node.requested.memoryMiB += r.memoryMiB;
      node.requested.gpu += r.gpu;
      node.requested.pods += 1;
    }
    return [...snapshots.values()];
  }

  /**
   * CPU and memory of this platform's agent Pods from the resource metrics API
   * (metrics.k8s.io/v1beta1, usually metrics-server): one cluster-wide list, selected by the
   * same labels as the informer. Pods the API has not scraped yet are absent. The memory
   * limit comes from the Pod spec in the informer cache (null when not cached or unlimited).
   * @throws KubeApiError 404 when the cluster does not serve metrics.k8s.io; 503 when it is
   *   registered but its backend is down; 403 when RBAC does not grant `list` on
   *   `pods.metrics.k8s.io`; DomainError KUBERNETES_BAD_METRICS when a figure cannot be read
   */
  async podMetrics(signal?: AbortSignal): Promise<PodUsageSample[]> {
    const list = await this.client.request<KubeList<KubePodMetrics>>(POD_METRICS_PATH, { query: { labelSelector: this.labelSelector }, signal });
    const out: PodUsageSample[] = [];
    for (const item of list.items ?? []) {
      const sample = podUsageFromMetrics(item, this.memoryLimitBytesOf(item.metadata.name));
      if (sample) out.push(sample);
    }
    return out;
  }

  /**
   * Creates or updates a tenant's namespace with its ResourceQuota, LimitRange,
   * NetworkPolicies and Services (create; on 409 AlreadyExists read and replace).
   */
  async ensureNamespace(tenantId: string, quota?: TenantQuota, signal?: AbortSignal): Promise<void> {
    const objects = buildNamespaceManifests({
      tenantId,
      quota,
      egressProxy: this.options.namespaces?.egressProxy,
      instanceId: this.options.instanceId,
    });
    for (const object of objects) await this.createOrReplace(object, signal);
  }

  /**
   * Pushes a tenant's current quota (from `namespaces.quotaFor`) into its namespace at once:
   * the ResourceQuota and LimitRange are replaced, or deleted when the tenant has no limit
   * any more. Called when a platform admin changes the quota; the namespace is otherwise
   * ensured once per process. A failure leaves the tenant to be ensured again by its next
   * agent's create.
   */
  async syncTenantQuota(tenantId: string, signal?: AbortSignal): Promise<void> {
    const quotaFor = this.options.namespaces?.quotaFor;
    if (!quotaFor) return;
    const namespace = tenantNamespace(tenantId);
    try {
      await this.client.request(`/api/v1/namespaces/${namespace}`, { signal });
    } catch (err) {
      if (!isKubeStatus(err, 404)) throw err;
      // Not made yet: its first agent's create makes it with the quota of that moment.
      this.ensuredNamespaces.delete(tenantId);
      return;
    }
    const synced = (async () => {
      const quota = await quotaFor(tenantId, signal);
      await this.ensureNamespace(tenantId, quota, signal);
      const kept = new Set(buildNamespaceManifests({ tenantId, quota }).map((o) => `${o.kind}/${o.metadata?.name}`));
      for (const [kind, path] of [
        ['ResourceQuota', `/api/v1/namespaces/${namespace}/resourcequotas/${QUOTA_NAME}`],
        ['LimitRange', `/api/v1/namespaces/${namespace}/limitranges/${LIMIT_RANGE_NAME}`],
      ] as const) {
        if (kept.has(`${kind}/${path.slice(path.lastIndexOf('/') + 1)}`)) continue;
        try {
          await this.client.request(path, { method: 'DELETE', signal });
        } catch (err) {
          if (!isKubeStatus(err, 404)) throw err;
        }
      }
    })();
    this.ensuredNamespaces.set(tenantId, synced);
    synced.catch(() => this.ensuredNamespaces.delete(tenantId));
    await synced;
  }

  /**
   * `http://<address>:<port>` of the cluster's egress proxy for allowlist agents; undefined
   * when no proxy is configured, or its range (`namespaces.egressProxy.cidr`) is wider than
   * one address, so allowlist agents cannot run on this cluster.
   */
  get egressProxyUrl(): string | undefined {
    const target = this.options.namespaces?.egressProxy;
    return target ? egressProxyUrl(target) : undefined;
  }

  /**
   * Makes an agent's ports reachable inside the cluster: a ClusterIP Service named like
   * its Pod and a NetworkPolicy that admits those ports (the namespace denies all ingress
   * otherwise). Create, or read and replace; call again to change the ports. remove() of
   * the agent's Pod deletes both. Returns where the ports are reachable: the Service's
   * cluster IP (none before the API server assigns one).
   */
  async exposeAgent(tenantId: string, exposed: ExposedAgent, signal?: AbortSignal): Promise<AgentEndpoint[]> {
    await this.ensureTenantNamespace(tenantId, signal);
    const names = exposedObjectNames(exposed.agentId);
    const objects = buildNamespaceManifests({ tenantId, expose: [exposed], instanceId: this.options.instanceId }).filter(
      (o) => o.metadata?.name === names.service || o.metadata?.name === names.policy,
    );
    for (const object of objects) await this.createOrReplace(object, signal);
    const namespace = tenantNamespace(tenantId);
    const service = await this.client.request<{ spec?: { clusterIP?: string } }>(`/api/v1/namespaces/${namespace}/services/${names.service}`, { signal });
    const clusterIp = service.spec?.clusterIP;
    if (!clusterIp || clusterIp === 'None') return [];
    return exposed.ports.map((p) => ({ port: p.targetPort ?? p.port, hostIp: clusterIp, hostPort: p.port }));
  }

  /** Deletes the Service and ingress NetworkPolicy exposeAgent made; absent ones are a no-op. */
  async unexposeAgent(tenantId: string, agentId: string, signal?: AbortSignal): Promise<void> {
    await this.deleteExposedObjects(tenantNamespace(tenantId), containerName(agentId), signal);
  }

  async create(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    await this.informer.waitForSync(signal);
    const pod = buildPodManifest(spec, { ...this.podOptions(), held: true }) as unknown as KubePod;
    const namespace = pod.metadata.namespace!;
    await this.ensureTenantNamespace(spec.tenantId, signal);
    let created: KubePod;
    try {
      created = await this.createPod(pod, signal);
    } catch (err) {
      if (isKubeStatus(err, 409)) return pod.metadata.name;
      if (isKubeStatus(err, 404)) {
        // The namespace went away since we ensured it (deleted by an operator).
        this.ensuredNamespaces.delete(spec.tenantId);
        await this.ensureTenantNamespace(spec.tenantId, signal);
        try {
          created = await this.createPod(pod, signal);
        } catch (retryErr) {
          if (isKubeStatus(retryErr, 409)) return pod.metadata.name;
          throw retryErr;
        }
      } else throw err;
    }
    // Return only once the cache has it, so an inspect right after sees the Pod.
    await this.informer.waitUntil(() => this.informer.get(created.metadata.name) !== undefined, signal, WAIT_GONE_MS, `Pod ${namespace}/${created.metadata.name} to appear in the watch`);
    return created.metadata.name;
  }

  async start(containerId: string, signal?: AbortSignal): Promise<void> {
    await this.informer.waitForSync(signal);
    let pod = this.informer.get(containerId);
    if (!pod) throw new NotFoundError('CONTAINER_NOT_FOUND', `no Pod "${containerId}" managed by this platform`, { containerId, nodeId: this.nodeId });
    if (pod.metadata.deletionTimestamp) {
      throw new KubeApiError(409, 'Conflict', `Pod ${podSummary(pod)} is being deleted; it cannot be started`);
    }
    if (isPodFinished(pod)) pod = await this.replacePod(pod, signal);
    else if (isHeld(pod)) await this.release(pod, signal);
    if (this.options.binding && !pod.spec.nodeName) await this.bind(pod, signal);
    await this.waitStarted(pod, signal);
  }

  async stop(containerId: string, graceMs: number, signal?: AbortSignal): Promise<void> {
    await this.informer.waitForSync(signal);
    const pod = this.informer.get(containerId);
    if (!pod || isPodFinished(pod) || isHeld(pod)) return;
    const { namespace, name, uid } = pod.metadata;
    if (!pod.status?.startTime) {
      // Never admitted by a kubelet (unschedulable): a deadline would not fire. Nothing ran,
      // so nothing is lost by deleting it.
      await this.deletePod(pod, Math.ceil(graceMs / 1000), signal);
      return;
    }
    try {
      await this.client.request(`/api/v1/namespaces/${namespace}/pods/${name}`, {
        method: 'PATCH',
        contentType: 'application/json-patch+json',
        body: [
          { op: 'test', path: '/metadata/uid', value: uid },
          { op: 'add', path: '/spec/activeDeadlineSeconds', value: 1 },
        ],
        signal,
      });
    } catch (err) {
      if (isKubeStatus(err, 404) || isKubeStatus(err, 422) || isKubeStatus(err, 409)) {
        // Gone, replaced, or already past a shorter deadline: nothing left to stop.
        if (!isKubeStatus(err, 422) || (this.informer.get(name)?.spec.activeDeadlineSeconds ?? 2) <= 1) return;
      }
      throw err;
    }
    const graceSeconds = pod.spec.terminationGracePeriodSeconds ?? 30;
    await this.informer.waitUntil(
      () => {
        const current = this.informer.get(name);
        return !current || current.metadata.uid !== uid || isPodFinished(current) || observedFromPod(current).state === 'exited';
      },
      signal,
      (graceSeconds + 15) * 1000,
      `Pod ${namespace}/${name} to stop`,
    );
  }

  async remove(containerId: string, signal?: AbortSignal): Promise<void> {
    await this.informer.waitForSync(signal);
    const pod = this.informer.get(containerId);
    const namespace = pod?.metadata.namespace ?? this.departed.get(containerId);
    if (pod) await this.deletePod(pod, 0, signal);
    // The agent's Service and ingress policy go with its Pod (an exposed agent is removed when
    // it is deleted, or after a start timeout: the next start exposes it again). By name and
    // whether or not the agent exposed anything: a mark on the cached Pod could lag the
    // expose (a stop right after the start), and a Pod already gone carries no mark at all.
    // Both are named after the Pod, so the Pod's name is all it takes; absent ones are a 404.
    if (namespace) await this.deleteExposedObjects(namespace, containerId, signal);
    this.departed.delete(containerId);
  }

  async inspect(containerId: string, signal?: AbortSignal): Promise<ObservedContainer | undefined> {
    await this.informer.waitForSync(signal);
    const pod = this.informer.get(containerId);
    return pod ? observedFromPod(pod) : undefined;
  }

  async list(signal?: AbortSignal): Promise<ObservedContainer[]> {
    await this.informer.waitForSync(signal);
    return this.informer.list().map(observedFromPod);
  }

  watch(onEvent: (event: RuntimeEvent) => void, signal: AbortSignal): void {
    this.informer.start();
    const unsubscribe = this.informer.onChange((prev, next) => {
      for (const event of podTransitionEvents(prev, next, Date.now())) {
        if (prev && !next && this.replacing.has(prev.metadata.uid ?? '')) continue;
        onEvent(event);
      }
    });
    signal.addEventListener('abort', unsubscribe, { once: true });
    this.closing.signal.addEventListener('abort', unsubscribe, { once: true });
  }

  async *logs(containerId: string, options: LogOptions, signal?: AbortSignal): AsyncIterable<LogLine> {
    await this.informer.waitForSync(signal);
    const pod = this.informer.get(containerId);
    if (!pod) throw new NotFoundError('CONTAINER_NOT_FOUND', `no Pod "${containerId}" managed by this platform`, { containerId, nodeId: this.nodeId });
    if (options.tail !== undefined && options.tail <= 0 && !options.follow) return;
    const stream = linkSignals(signal, this.closing.signal);
    try {
      yield* this.podLogs(containerId, pod, options, stream.signal);
    } finally {
      stream.dispose();
    }
  }

  private async *podLogs(containerId: string, pod: KubePod, options: LogOptions, streamSignal: AbortSignal): AsyncIterable<LogLine> {
    if (options.follow) {
      // The endpoint refuses a container that is still waiting: wait for it to run or end.
      await this.informer.waitUntil(
        () => {
          const current = this.informer.get(containerId);
          if (!current || current.metadata.uid !== pod.metadata.uid) return true;
          const state = observedFromPod(current);
          return state.state !== 'created' || state.error !== undefined;
        },
        streamSignal,
        2 ** 31 - 1,
        `Pod ${containerId} to start`,
      ).catch((err: unknown) => {
        if (!streamSignal.aborted) throw err;
      });
      if (streamSignal.aborted) return;
    }
    const split = this.options.logStreams === 'split';
    try {
      if (!split) {
        yield* this.readLog(pod, 'stdout', { follow: options.follow, tailLines: options.tail, sinceMs: options.sinceMs }, streamSignal);
        return;
      }
      let sinceMs = options.sinceMs;
      let skipUpTo: LogLine | undefined;
      if (options.tail !== undefined) {
        // tailLines cannot be combined with one stream: read both whole, cut here.
        const whole = await Promise.all([
          collect(this.readLog(pod, 'stdout', { sinceMs }, streamSignal)),
          collect(this.readLog(pod, 'stderr', { sinceMs }, streamSignal)),
        ]);
        const tailed = tailMerged(whole, options.tail);
        yield* tailed;
        if (!options.follow) return;
        skipUpTo = tailed[tailed.length - 1];
        const wholeLast = tailMerged(whole, undefined).at(-1);
        sinceMs = wholeLast ? wholeLast.time : options.sinceMs;
        if (wholeLast) skipUpTo = wholeLast;
      } else if (!options.follow) {
        const whole = await Promise.all([
          collect(this.readLog(pod, 'stdout', { sinceMs }, streamSignal)),
          collect(this.readLog(pod, 'stderr', { sinceMs }, streamSignal)),
        ]);
        yield* tailMerged(whole, undefined);
        return;
      }
      yield* this.followSplit(pod, sinceMs, skipUpTo, streamSignal);
    } catch (err) {
      if (streamSignal.aborted) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
    await this.informer.stop();
  }

  // ---- helpers ---------------------------------------------------------------------

  private memoryLimitBytesOf(podName: string): number | null {
    const limit = this.informer.get(podName)?.spec.containers.find((c) => c.name === AGENT_CONTAINER_NAME)?.resources?.limits?.memory;
    if (!limit) return null;
    try {
      return Math.round(parseKubeQuantity(limit));
    } catch {
      return null; // the API server validated it; a quantity we cannot read just means "unknown"
    }
  }

  private ensureTenantNamespace(tenantId: string, signal?: AbortSignal): Promise<void> {
    let ensured = this.ensuredNamespaces.get(tenantId);
    if (!ensured) {
      const quotaFor = this.options.namespaces?.quotaFor;
      ensured = (async () => this.ensureNamespace(tenantId, quotaFor ? await quotaFor(tenantId, signal) : undefined, signal))();
      this.ensuredNamespaces.set(tenantId, ensured);
      ensured.catch(() => this.ensuredNamespaces.delete(tenantId));
    }
    return ensured;
  }

  private podOptions(): PodManifestOptions {
    const startTimeoutMs = this.controller?.startTimeoutMs;
    return {
      ...this.options.pod,
      startTimeoutSeconds: this.options.pod?.startTimeoutSeconds ?? (startTimeoutMs !== undefined ? Math.ceil(startTimeoutMs / 1000) : undefined),
      schedulerName: this.options.binding?.schedulerName,
      instanceId: this.options.instanceId,
    };
  }

  /** Deletes the Service and ingress policy of the agent whose Pod is `podName`; absent ones are a no-op. */
  private async deleteExposedObjects(namespace: string, podName: string, signal?: AbortSignal): Promise<void> {
    const names = exposedObjectNames(podName.slice(containerName('').length));
    for (const path of [`/api/v1/namespaces/${namespace}/services/${names.service}`, `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${names.policy}`]) {
      try {
        await this.client.request(path, { method: 'DELETE', body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' }, signal });
      } catch (err) {
        if (!isKubeStatus(err, 404)) throw err;
      }
    }
  }

  private async createOrReplace(object: KubernetesObject, signal?: AbortSignal): Promise<void> {
    const collection = collectionPath(object);
    const name = object.metadata!.name!;
    try {
      await this.client.request(collection, { method: 'POST', body: object, signal });
    } catch (err) {
      if (!isKubeStatus(err, 409)) throw err;
      if (object.kind === 'Namespace') return; // labels of an existing namespace are left alone
      const current = await this.client.request<KubernetesObject>(`${collection}/${name}`, { signal });
      const replacement = { ...object, metadata: { ...object.metadata, resourceVersion: current.metadata?.resourceVersion } } as KubernetesObject & { spec?: Record<string, unknown> };
      // A Service's clusterIP is assigned by the server and immutable: keep it.
      const currentSpec = (current as { spec?: Record<string, unknown> }).spec;
      if (object.kind === 'Service' && currentSpec?.clusterIP) replacement.spec = { ...replacement.spec, clusterIP: currentSpec.clusterIP };
      await this.client.request(`${collection}/${name}`, { method: 'PUT', body: replacement, signal });
    }
  }

  private async createPod(pod: KubePod, signal?: AbortSignal): Promise<KubePod> {
    return await this.client.request<KubePod>(`/api/v1/namespaces/${pod.metadata.namespace}/pods`, { method: 'POST', body: pod, signal });
  }

  private async release(pod: KubePod, signal?: AbortSignal): Promise<void> {
    const gates = (pod.spec.schedulingGates ?? []).filter((g) => g.name !== START_GATE);
    try {
      await this.client.request(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, {
        method: 'PATCH',
        contentType: 'application/json-patch+json',
        body: [
          { op: 'test', path: '/metadata/uid', value: pod.metadata.uid },
          gates.length > 0 ? { op: 'replace', path: '/spec/schedulingGates', value: gates } : { op: 'remove', path: '/spec/schedulingGates' },
        ],
        signal,
      });
    } catch (err) {
      // 422: the gate is already gone (a concurrent start won); anything else is real.
      if (!isKubeStatus(err, 422)) throw err;
    }
  }

  private async bind(pod: KubePod, signal?: AbortSignal): Promise<void> {
    const binding = this.options.binding!;
    const r = podRequests(pod);
    const request: KubePlacementRequest = {
      podName: pod.metadata.name,
      namespace: pod.metadata.namespace!,
      agentId: observedFromPod(pod).agentId,
      ...r,
      ...placementFromPod(pod.spec),
    };
    const nodeName = binding.chooseNode(request, await this.nodeSnapshots(signal));
    if (!nodeName) return;
    try {
      await this.client.request(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/binding`, {
        method: 'POST',
        body: { apiVersion: 'v1', kind: 'Binding', metadata: { name: pod.metadata.name, uid: pod.metadata.uid }, target: { apiVersion: 'v1', kind: 'Node', name: nodeName } },
        signal,
      });
    } catch (err) {
      // Already bound (a concurrent start): the Pod is placed, which is all we want.
      if (!isKubeStatus(err, 409)) throw err;
    }
  }

  /** Waits (up to startWaitMs) for the container to run, end or fail to start; never throws on timeout. */
  private async waitStarted(pod: KubePod, signal?: AbortSignal): Promise<void> {
    const name = pod.metadata.name;
    await this.informer
      .waitUntil(
        () => {
          const current = this.informer.get(name);
          if (!current) return true;
          const observed = observedFromPod(current);
          return observed.state !== 'created' || observed.error !== undefined;
        },
        signal,
        this.startWaitMs,
        `Pod ${pod.metadata.namespace}/${name} to start`,
      )
      .catch((err: unknown) => {
        if (signal?.aborted || this.closing.signal.aborted) throw err;
        // Slow image pull or no room in the cluster: the controller's start deadline decides.
      });
  }

  /**
   * Restart: an ended Pod cannot run again, so delete it and create it anew, same name. The
   * new Pod is built from the agent's current spec (attachController), not copied: labels,
   * env, egress label and proxy URL may have changed while the agent was stopped (a PATCH of
   * its network mode), and a copy would bring the old egress back.
   */
  private async replacePod(old: KubePod, signal?: AbortSignal): Promise<KubePod> {
    const { namespace, name, uid } = old.metadata;
    const { agentId, startedAt: previousStart } = observedFromPod(old);
    // Before the delete: a spec that cannot be run (SandboxSetupError) leaves the ended Pod, and its logs, alone.
    const current = this.controller && agentId ? await this.controller.containerSpecOf(agentId, signal) : undefined;
    const fresh = current ? this.rebuiltPod(current, old) : this.copiedPod(old);
    this.replacing.add(uid ?? '');
    try {
      await this.deletePod(old, 0, signal);
    } finally {
      setTimeout(() => this.replacing.delete(uid ?? ''), 60_000).unref();
    }
    // Kubernetes times have whole seconds: start the new run in a later second than the
    // old one, so the two runs' startedAt differ (the platform tells runs apart by it).
    if (previousStart !== undefined) {
      const waitMs = Math.floor(previousStart / 1000) * 1000 + 1000 - Date.now();
      if (waitMs > 0) await sleep(waitMs, undefined, { signal });
    }
    let created: KubePod;
    try {
      created = await this.createPod(fresh, signal);
    } catch (err) {
      if (!isKubeStatus(err, 409)) throw err;
      // A concurrent start recreated it first.
      created = await this.client.request<KubePod>(`/api/v1/namespaces/${namespace}/pods/${name}`, { signal });
    }
    await this.informer.waitUntil(() => this.informer.get(name)?.metadata.uid === created.metadata.uid, signal, WAIT_GONE_MS, `new Pod ${namespace}/${name} in the watch`);
    return created;
  }

  /** The Pod a restart creates from the agent's current spec: not held, so it is scheduled at once. */
  private rebuiltPod(spec: ContainerSpec, old: KubePod): KubePod {
    if (containerName(spec.agentId) !== old.metadata.name) throw new Error(`the spec of agent ${spec.agentId} cannot replace Pod ${podSummary(old)}`);
    return buildPodManifest(spec, { ...this.podOptions(), namespace: old.metadata.namespace, held: false }) as unknown as KubePod;
  }

  /** Without a controller: the ended Pod's labels and spec, with its deadline restored (stop() lowered it). */
  private copiedPod(old: KubePod): KubePod {
    const annotations = { ...old.metadata.annotations };
    const spec: KubePod['spec'] = { ...old.spec };
    delete spec.nodeName;
    delete spec.schedulingGates;
    const deadline = podDeadlineSeconds(Number(annotations[TIMEOUT_ANNOTATION]), this.podOptions());
    if (deadline !== undefined) spec.activeDeadlineSeconds = deadline;
    else delete spec.activeDeadlineSeconds;
    return { apiVersion: 'v1', kind: 'Pod', metadata: { name: old.metadata.name, namespace: old.metadata.namespace, labels: { ...old.metadata.labels }, annotations }, spec };
  }

  /** Deletes a Pod (uid precondition) and waits until the watch shows it gone. */
  private async deletePod(pod: KubePod, graceSeconds: number, signal?: AbortSignal): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    try {
      await this.client.request(`/api/v1/namespaces/${namespace}/pods/${name}`, {
        method: 'DELETE',
        query: { gracePeriodSeconds: graceSeconds },
        body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: graceSeconds, preconditions: { uid } },
        signal,
      });
    } catch (err) {
      // 404: already gone; 409: the name now belongs to a newer Pod, which is not ours to delete.
      if (!isKubeStatus(err, 404) && !isKubeStatus(err, 409)) throw err;
    }
    await this.informer.waitUntil(() => this.informer.get(name)?.metadata.uid !== uid, signal, WAIT_GONE_MS + graceSeconds * 1000, `Pod ${namespace}/${name} to go away`);
  }

  private async *readLog(
    pod: KubePod,
    stream: LogLine['stream'],
    o: { follow?: boolean | undefined; tailLines?: number | undefined; sinceMs?: number | undefined },
    signal: AbortSignal,
  ): AsyncGenerator<LogLine> {
    const query: Record<string, string | number | boolean | undefined> = {
      container: AGENT_CONTAINER_NAME,
      timestamps: true,
      follow: o.follow ? true : undefined,
      tailLines: o.tailLines,
      sinceTime: o.sinceMs !== undefined ? sinceTimeParam(o.sinceMs) : undefined,
    };
    if (this.options.logStreams === 'split') query.stream = stream === 'stdout' ? 'Stdout' : 'Stderr';
    let res: IncomingMessage;
    try {
      res = await this.client.stream(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/log`, query, signal);
    } catch (err) {
      // 400 "waiting to start": the container has not run, so it has no logs yet.
      if (isKubeStatus(err, 400) && /waiting to start|ContainerCreating/.test(err.message)) return;
      throw err;
    }
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    // A destroyed response does not always end readline's iterator: close it on abort.
    const onAbort = (): void => lines.close();
    signal.addEventListener('abort', onAbort, { once: true });
    res.once('close', () => lines.close());
    try {
      for await (const raw of lines) {
        const line = parseTimestampedLogLine(raw, stream);
        if (!line) continue;
        if (o.sinceMs !== undefined && line.time < o.sinceMs) continue;
        yield line;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      res.destroy();
    }
  }

  /** Follows stdout and stderr at once; ends when both streams end (the container exited). */
  private async *followSplit(pod: KubePod, sinceMs: number | undefined, skipUpTo: LogLine | undefined, signal: AbortSignal): AsyncGenerator<LogLine> {
    const queue: LogLine[] = [];
    let wake: (() => void) | undefined;
    let open = 2;
    let failure: unknown;
    const pump = async (stream: LogLine['stream']): Promise<void> => {
      try {
        for await (const line of this.readLog(pod, stream, { follow: true, sinceMs }, signal)) {
          if (skipUpTo && line.time <= skipUpTo.time) continue;
          queue.push(line);
          wake?.();
        }
      } catch (err) {
        if (!signal.aborted) failure ??= err;
      } finally {
        open--;
        wake?.();
      }
    };
    const pumps = Promise.all([pump('stdout'), pump('stderr')]);
    const onAbort = (): void => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (failure) throw failure;
        if (open === 0 || signal.aborted) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      await pumps;
    }
  }
}

async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

const API_PATHS: Record<string, { prefix: string; plural: string; namespaced: boolean }> = {
  Namespace: { prefix: '/api/v1', plural: 'namespaces', namespaced: false },
  ResourceQuota: { prefix: '/api/v1', plural: 'resourcequotas', namespaced: true },
  LimitRange: { prefix: '/api/v1', plural: 'limitranges', namespaced: true },
  Service: { prefix: '/api/v1', plural: 'services', namespaced: true },
  NetworkPolicy: { prefix: '/apis/networking.k8s.io/v1', plural: 'networkpolicies', namespaced: true },
};

function collectionPath(object: KubernetesObject): string {
  const api = API_PATHS[object.kind ?? ''];
  if (!api) throw new Error(`no API path known for kind ${object.kind}`);
  return api.namespaced ? `${api.prefix}/namespaces/${object.metadata!.namespace}/${api.plural}` : `${api.prefix}/${api.plural}`;
}

const TAINT_EFFECTS: ReadonlySet<string> = new Set(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);

function nodeSnapshot(node: KubeNode): KubeNodeSnapshot {
  const a = node.status?.allocatable ?? {};
  return {
    name: node.metadata.name,
    labels: node.metadata.labels ?? {},
    taints: (node.spec?.taints ?? [])
      .filter((t) => TAINT_EFFECTS.has(t.effect))
      .map((t) => (t.value !== undefined ? { key: t.key, value: t.value, effect: t.effect as Taint['effect'] } : { key: t.key, effect: t.effect as Taint['effect'] })),
    ready: node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    unschedulable: node.spec?.unschedulable === true,
    allocatable: {
      cpuMillicores: a.cpu ? parseCpuMillicores(a.cpu) : 0,
      memoryMiB: a.memory ? Math.floor(parseMemoryMiB(a.memory)) : 0,
      gpu: Number(a['nvidia.com/gpu'] ?? 0) || 0,
      pods: Number(a.pods ?? 0) || 0,
    },
    requested: { cpuMillicores: 0, memoryMiB: 0, gpu: 0, pods: 0 },
  };
}

/**
 * One GPU "device" per `nvidia.com/gpu` a usable Node offers, named `<node>/<index>`, for the
 * platform's GPU accounting (a count per agent; the Pod asks for `nvidia.com/gpu: N` and the
 * device plugin picks the devices). The model comes from GPU feature discovery's
 * `nvidia.com/gpu.product` label where the cluster runs it.
 */
function gpuSlots(nodes: KubeNode[]): GpuDevice[] {
  const slots: GpuDevice[] = [];
  for (const node of nodes) {
    const count = Number(node.status?.allocatable?.['nvidia.com/gpu'] ?? 0) || 0;
    const model = node.metadata.labels?.['nvidia.com/gpu.product'] ?? 'nvidia.com/gpu';
    const memory = Number(node.metadata.labels?.['nvidia.com/gpu.memory']);
    for (let i = 0; i < count; i++) slots.push({ id: `${node.metadata.name}/${i}`, model, ...(memory > 0 ? { memoryMiB: memory } : {}) });
  }
  return slots;
}

/** A Pod's requests as the scheduler counts them (requests, else limits). */
function podRequests(pod: KubePod): { cpuMillicores: number; memoryMiB: number; gpu: number } {
  let cpuMillicores = 0;
  let memoryMiB = 0;
  let gpu = 0;
  for (const c of pod.spec.containers) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    const cpu = req.cpu ?? lim.cpu;
    const mem = req.memory ?? lim.memory;
    if (cpu) cpuMillicores += parseCpuMillicores(cpu);
    if (mem) memoryMiB += parseMemoryMiB(mem);
    gpu += Number(lim['nvidia.com/gpu'] ?? req['nvidia.com/gpu'] ?? 0) || 0;
  }
  return { cpuMillicores, memoryMiB, gpu };
}
