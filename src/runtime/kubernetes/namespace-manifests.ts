import type {
  KubernetesObject,
  V1Namespace,
  V1NetworkPolicy,
  V1ResourceQuota,
  V1Service,
} from '@kubernetes/client-node';
import { formatCpu, formatMemory } from '../../domain/quantity.js';
import { AGENT_ID_LABEL, INSTANCE_LABEL, MANAGED_LABEL, TENANT_LABEL, containerName } from '../runtime.js';
import { EGRESS_ALLOWLIST, EGRESS_LABEL, EGRESS_OPEN, tenantNamespace } from './kube-names.js';

/**
 * A tenant's quota in base units; mirrored into a ResourceQuota and a LimitRange. An
 * undefined field is unlimited and left out of both.
 */
export interface TenantQuota {
  cpuMillicores?: number | undefined;
  memoryMiB?: number | undefined;
  gpu?: number | undefined;
  /** Agents (Pods that have not ended) at the same time. */
  agents?: number | undefined;
}

/** Where allowlist agents may connect: the platform's egress proxy. */
export interface EgressProxyTarget {
  /** The proxy's address range, e.g. "10.96.12.7/32" (a Service IP) or a node subnet. */
  cidr: string;
  port: number;
  /**
   * The platform Pods behind that address. CNIs such as Calico and Cilium apply egress
   * policies after the Service's DNAT, so they match the Pod behind a cluster IP, never the
   * cluster IP itself: without this peer the `ipBlock` above admits nothing there.
   * @default none: the `ipBlock` peer alone (CNIs that match before DNAT, or a proxy outside the cluster)
   */
  pods?: { namespace: string; labels: Record<string, string>; port: number } | undefined;
}

/**
 * The proxy URL allowlist agents get as HTTP_PROXY/HTTPS_PROXY: the one address of a
 * single-address range (`/32`, or `/128` for IPv6). Undefined for a wider range, which
 * names no one address to connect to.
 */
export function egressProxyUrl(target: EgressProxyTarget): string | undefined {
  const [address, bits] = target.cidr.split('/');
  if (!address) return undefined;
  const v6 = address.includes(':');
  if (Number(bits) !== (v6 ? 128 : 32)) return undefined;
  return `http://${v6 ? `[${address}]` : address}:${target.port}`;
}

/** One agent that serves ports inside the cluster. */
export interface ExposedAgent {
  agentId: string;
  ports: { name?: string | undefined; port: number; targetPort?: number | undefined; protocol?: 'TCP' | 'UDP' | undefined }[];
}

/** Input of buildNamespaceManifests; everything but the tenant is optional. */
export interface NamespaceManifestOptions {
  tenantId: string;
  /** @default tenantNamespace(tenantId) */
  namespace?: string | undefined;
  /** No quota: no ResourceQuota and no LimitRange. */
  quota?: TenantQuota | undefined;
  /** No proxy: allowlist agents get no egress at all (not even DNS). */
  egressProxy?: EgressProxyTarget | undefined;
  /**
   * Labels of the cluster DNS Pods in kube-system.
   * @default { "k8s-app": "kube-dns" } (CoreDNS keeps that label)
   */
  dnsPodLabels?: Record<string, string> | undefined;
  /** Agents that get a Service and an ingress rule for their ports. */
  expose?: ExposedAgent[] | undefined;
  instanceId?: string | undefined;
}

/** Names of the objects, so the runtime can update them in place. */
export const QUOTA_NAME = 'agent-platform-quota';
export const LIMIT_RANGE_NAME = 'agent-platform-limits';
export const DEFAULT_DENY_POLICY = 'default-deny';
export const EGRESS_PROXY_POLICY = 'allow-egress-proxy';
export const EGRESS_OPEN_POLICY = 'allow-egress-open';

/** Names of the Service and the ingress NetworkPolicy an exposed agent gets. */
export function exposedObjectNames(agentId: string): { service: string; policy: string } {
  const name = containerName(agentId);
  return { service: name, policy: `allow-ingress-${name}`.slice(0, 253) };
}

/** Default container limits the LimitRange hands to a Pod that names none (never the platform's own Pods). */
const DEFAULT_CPU_MILLICORES = 500;
const DEFAULT_MEMORY_MIB = 256;

/**
 * Everything a tenant namespace holds besides agent Pods (pure), in apply order: the
 * Namespace, its ResourceQuota and LimitRange (when a quota is given), a default-deny
 * NetworkPolicy for ingress and egress, the egress-proxy policy for allowlist agents
 * (DNS to kube-dns on 53 UDP/TCP plus the proxy's CIDR and port), the open-egress policy
 * for `open` agents (Pods labelled EGRESS_LABEL=open), and per exposed agent
 * a ClusterIP Service with a NetworkPolicy that admits its ports.
 *
 * NetworkPolicies are enforced only by a CNI plugin that implements them (Calico,
 * Cilium, ...); on a cluster without one they are accepted and ignored.
 */
export function buildNamespaceManifests(options: NamespaceManifestOptions): KubernetesObject[] {
  const namespace = options.namespace ?? tenantNamespace(options.tenantId);
  const common: Record<string, string> = { [MANAGED_LABEL]: 'true', [TENANT_LABEL]: options.tenantId };
  if (options.instanceId) common[INSTANCE_LABEL] = options.instanceId;
  const meta = (name: string): { name: string; namespace: string; labels: Record<string, string> } => ({ name, namespace, labels: { ...common } });

  const out: KubernetesObject[] = [];
  const ns: V1Namespace = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: namespace,
      labels: {
        ...common,
        'kubernetes.io/metadata.name': namespace,
        // The admission controller then rejects any Pod weaker than the restricted profile,
        // whoever creates it.
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      },
    },
  };
  out.push(ns);

  const q = options.quota;
  const hard: Record<string, string> = {};
  if (q?.cpuMillicores !== undefined) hard['requests.cpu'] = formatCpu(q.cpuMillicores);
  if (q?.memoryMiB !== undefined) {
    hard['requests.memory'] = formatMemory(q.memoryMiB);
    hard['limits.memory'] = formatMemory(q.memoryMiB);
  }
  if (q?.gpu !== undefined) hard['requests.nvidia.com/gpu'] = String(q.gpu);
  if (q?.agents !== undefined) hard.pods = String(q.agents);
  if (q && Object.keys(hard).length > 0) {
    const quota: V1ResourceQuota = { apiVersion: 'v1', kind: 'ResourceQuota', metadata: meta(QUOTA_NAME), spec: { hard } };
    out.push(quota);
  }
  if (q && (q.cpuMillicores !== undefined || q.memoryMiB !== undefined)) {
    const defaultCpu = Math.min(DEFAULT_CPU_MILLICORES, q.cpuMillicores ?? DEFAULT_CPU_MILLICORES);
    const defaultMemory = Math.min(DEFAULT_MEMORY_MIB, q.memoryMiB ?? DEFAULT_MEMORY_MIB);
    // No single container may exceed the whole tenant's quota.
    const max: Record<string, string> = {};
    if (q.cpuMillicores !== undefined) max.cpu = formatCpu(q.cpuMillicores);
    if (q.memoryMiB !== undefined) max.memory = formatMemory(q.memoryMiB);
    // Written in wire form: client-node's V1LimitRangeItem spells "default" as "_default"
    // and only its serializer translates it; the adapter sends plain JSON.
    const limitRange: KubernetesObject & { spec: { limits: Record<string, unknown>[] } } = {
      apiVersion: 'v1',
      kind: 'LimitRange',
      metadata: meta(LIMIT_RANGE_NAME),
      spec: {
        limits: [
          {
            type: 'Container',
            max,
            default: { cpu: formatCpu(defaultCpu), memory: formatMemory(defaultMemory) },
            defaultRequest: { cpu: formatCpu(Math.max(1, Math.floor(defaultCpu / 5))), memory: formatMemory(defaultMemory) },
          },
        ],
      },
    };
    out.push(limitRange);
  }

  const defaultDeny: V1NetworkPolicy = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: meta(DEFAULT_DENY_POLICY),
    spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
  };
  out.push(defaultDeny);

  if (options.egressProxy) {
    const dnsLabels = options.dnsPodLabels ?? { 'k8s-app': 'kube-dns' };
    const proxyPolicy: V1NetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: meta(EGRESS_PROXY_POLICY),
      spec: {
        podSelector: { matchLabels: { [EGRESS_LABEL]: EGRESS_ALLOWLIST } },
        policyTypes: ['Egress'],
        egress: [
          {
            to: [
              {
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
                podSelector: { matchLabels: { ...dnsLabels } },
              },
            ],
            ports: [
              { protocol: 'UDP', port: 53 },
              { protocol: 'TCP', port: 53 },
            ],
          },
          { to: [{ ipBlock: { cidr: options.egressProxy.cidr } }], ports: [{ protocol: 'TCP', port: options.egressProxy.port }] },
          ...(options.egressProxy.pods
            ? [
                {
                  to: [
                    {
                      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': options.egressProxy.pods.namespace } },
                      podSelector: { matchLabels: { ...options.egressProxy.pods.labels } },
                    },
                  ],
                  ports: [{ protocol: 'TCP', port: options.egressProxy.pods.port }],
                },
              ]
            : []),
        ],
      },
    };
    out.push(proxyPolicy);
  }

  // `open` agents (platform admins only) may connect anywhere, as on Docker's bridge network:
  // without this policy the default deny above would leave them no egress at all.
  const openPolicy: V1NetworkPolicy = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: meta(EGRESS_OPEN_POLICY),
    spec: { podSelector: { matchLabels: { [EGRESS_LABEL]: EGRESS_OPEN } }, policyTypes: ['Egress'], egress: [{}] },
  };
  out.push(openPolicy);

  for (const exposed of options.expose ?? []) {
    if (exposed.ports.length === 0) continue;
    const { service: name, policy: policyName } = exposedObjectNames(exposed.agentId);
    const selector = { [AGENT_ID_LABEL]: exposed.agentId };
    const service: V1Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...meta(name), labels: { ...common, [AGENT_ID_LABEL]: exposed.agentId } },
      spec: {
        type: 'ClusterIP',
        selector,
        ports: exposed.ports.map((p, i) => ({
          name: p.name ?? `port-${i}`,
          port: p.port,
          targetPort: p.targetPort ?? p.port,
          protocol: p.protocol ?? 'TCP',
        })),
      },
    };
    out.push(service);
    const ingress: V1NetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { ...meta(policyName), labels: { ...common, [AGENT_ID_LABEL]: exposed.agentId } },
      spec: {
        podSelector: { matchLabels: selector },
        policyTypes: ['Ingress'],
        // From anywhere in the cluster, but only to the exposed ports.
        ingress: [{ ports: exposed.ports.map((p) => ({ protocol: p.protocol ?? 'TCP', port: p.targetPort ?? p.port })) }],
      },
    };
    out.push(ingress);
  }
  return out;
}
