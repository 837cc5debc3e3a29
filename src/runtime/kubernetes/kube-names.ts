/**
 * Names and label keys the Kubernetes adapter writes. Kept apart from the manifest
 * builders so the runtime, the namespace manifests and the tests agree on them.
 */

/** Name of the one container inside every agent Pod. */
export const AGENT_CONTAINER_NAME = 'agent';

/**
 * Scheduling gate that holds a created-but-not-started agent Pod (Kubernetes 1.30+ GA,
 * `spec.schedulingGates`). The runtime's `start()` removes it; until then the Pod is
 * neither scheduled nor run, which is what Docker's "created" state means.
 */
export const START_GATE = 'io.agent-platform/start';

/** Pod label selecting agents whose egress goes through the platform's egress proxy. */
export const EGRESS_LABEL = 'io.agent-platform.egress';
export const EGRESS_ALLOWLIST = 'allowlist';
/** EGRESS_LABEL value of `open` agents, which the namespace lets out anywhere. */
export const EGRESS_OPEN = 'open';

/** Annotation keeping the run timeout, so a restart (a new Pod) restores it after stop() shortened it. */
export const TIMEOUT_ANNOTATION = 'io.agent-platform/timeout-seconds';
/** Annotation recording the pids limit, which a Pod spec cannot express (it is a kubelet setting). */
export const PIDS_LIMIT_ANNOTATION = 'io.agent-platform/pids-limit';

const DNS_LABEL_MAX = 63;

/**
 * The namespace of a tenant: `ap-<tenant>`, lowercased, every character outside
 * [a-z0-9-] replaced by "-", cut to the 63 characters of a DNS-1123 label (and no
 * trailing "-").
 */
export function tenantNamespace(tenantId: string): string {
  const cleaned = `ap-${tenantId}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, DNS_LABEL_MAX);
  return cleaned.replace(/-+$/, '') || 'ap-default';
}

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** True for a valid label key (optional DNS-subdomain prefix, then a name). */
export function isValidLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash === -1) return LABEL_NAME.test(key);
  const prefix = key.slice(0, slash);
  return prefix.length <= 253 && LABEL_PREFIX.test(prefix) && LABEL_NAME.test(key.slice(slash + 1));
}

/** True for a valid label value (empty, or up to 63 name characters). */
export const isValidLabelValue = (value: string): boolean => value === '' || LABEL_NAME.test(value);
