import { describe, expect, it } from 'vitest';
import { validateKubeObject } from '../../../test/kubernetes/validate-kube-object.js';
import { EGRESS_LABEL } from './kube-names.js';
import { buildNamespaceManifests } from './namespace-manifests.js';

describe('buildNamespaceManifests', () => {
  const all = buildNamespaceManifests({
    tenantId: 'acme',
    quota: { cpuMillicores: 4000, memoryMiB: 8192, gpu: 1, agents: 20 },
    egressProxy: { cidr: '10.96.0.10/32', port: 3128 },
    expose: [{ agentId: 'web1', ports: [{ port: 8080 }] }],
  });
  const byKind = (kind: string) => all.filter((o) => o.kind === kind) as any[];

  it('produces only schema-valid objects, namespace first', () => {
    for (const object of all) validateKubeObject(object);
    expect(all[0]!.kind).toBe('Namespace');
    expect(all.map((o) => o.kind)).toEqual(['Namespace', 'ResourceQuota', 'LimitRange', 'NetworkPolicy', 'NetworkPolicy', 'NetworkPolicy', 'Service', 'NetworkPolicy']);
    for (const o of all.slice(1)) expect(o.metadata!.namespace).toBe('ap-acme');
  });

  it('enforces the restricted Pod Security profile on the namespace', () => {
    expect(byKind('Namespace')[0].metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('mirrors the quota into a ResourceQuota and a LimitRange (wire field "default")', () => {
    expect(byKind('ResourceQuota')[0].spec.hard).toEqual({
      'requests.cpu': '4',
      'requests.memory': '8Gi',
      'limits.memory': '8Gi',
      'requests.nvidia.com/gpu': '1',
      pods: '20',
    });
    const item = byKind('LimitRange')[0].spec.limits[0];
    expect(item.max).toEqual({ cpu: '4', memory: '8Gi' });
    expect(item.default).toEqual({ cpu: '500m', memory: '256Mi' });
    expect(item).not.toHaveProperty('_default');
  });

  it('denies all ingress and egress by default', () => {
    const deny = byKind('NetworkPolicy').find((p) => p.metadata.name === 'default-deny');
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
  });

  it('lets allowlist agents reach kube-dns on 53 and the egress proxy, nothing else', () => {
    const proxy = byKind('NetworkPolicy').find((p) => p.metadata.name === 'allow-egress-proxy');
    expect(proxy.spec.podSelector).toEqual({ matchLabels: { [EGRESS_LABEL]: 'allowlist' } });
    expect(proxy.spec.policyTypes).toEqual(['Egress']);
    expect(proxy.spec.egress[0].ports).toEqual([
      { protocol: 'UDP', port: 53 },
      { protocol: 'TCP', port: 53 },
    ]);
    expect(proxy.spec.egress[0].to[0].podSelector).toEqual({ matchLabels: { 'k8s-app': 'kube-dns' } });
    expect(proxy.spec.egress[1]).toEqual({ to: [{ ipBlock: { cidr: '10.96.0.10/32' } }], ports: [{ protocol: 'TCP', port: 3128 }] });
  });

  it('also admits the platform Pods behind the proxy Service when they are named (CNIs that match after DNAT)', () => {
    const objects = buildNamespaceManifests({
      tenantId: 'acme',
      egressProxy: { cidr: '10.96.0.10/32', port: 3128, pods: { namespace: 'agent-platform', labels: { 'app.kubernetes.io/name': 'agent-platform' }, port: 8128 } },
    });
    for (const object of objects) validateKubeObject(object);
    const proxy = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata!.name === 'allow-egress-proxy') as any;
    expect(proxy.spec.egress).toHaveLength(3);
    expect(proxy.spec.egress[1]).toEqual({ to: [{ ipBlock: { cidr: '10.96.0.10/32' } }], ports: [{ protocol: 'TCP', port: 3128 }] });
    expect(proxy.spec.egress[2]).toEqual({
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'agent-platform' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'agent-platform' } },
        },
      ],
      ports: [{ protocol: 'TCP', port: 8128 }],
    });
  });

  it('lets open agents (and only them) out anywhere', () => {
    const open = byKind('NetworkPolicy').find((p) => p.metadata.name === 'allow-egress-open');
    expect(open.spec).toEqual({ podSelector: { matchLabels: { [EGRESS_LABEL]: 'open' } }, policyTypes: ['Egress'], egress: [{}] });
  });

  it('exposes an agent with a Service and an ingress rule for its ports only', () => {
    const service = byKind('Service')[0];
    expect(service.metadata.name).toBe('ap-web1');
    expect(service.spec.selector).toEqual({ 'io.agent-platform.agent-id': 'web1' });
    expect(service.spec.ports).toEqual([{ name: 'port-0', port: 8080, targetPort: 8080, protocol: 'TCP' }]);
    const ingress = byKind('NetworkPolicy').find((p) => p.metadata.name === 'allow-ingress-ap-web1');
    expect(ingress.spec.ingress).toEqual([{ ports: [{ protocol: 'TCP', port: 8080 }] }]);
  });

  it('without quota or proxy: namespace, default deny and the open-egress policy only', () => {
    expect(buildNamespaceManifests({ tenantId: 't' }).map((o) => o.metadata?.name)).toEqual(['ap-t', 'default-deny', 'allow-egress-open']);
  });
});
