/**
 * FAKE Kubernetes API server, for tests only.
 *
 * No kube-apiserver (nor etcd, nor a kubelet) can run on the machines this project is
 * built on, so the Kubernetes runtime is tested against this fake: a real HTTP server
 * that speaks the subset of the Kubernetes REST protocol the adapter uses, with the
 * semantics that matter to a client and that are easy to get wrong:
 *
 * - one global resourceVersion that grows with every write; lists carry it in
 *   metadata.resourceVersion;
 * - watches (`?watch=true`) resume from a resourceVersion, replay what happened since,
 *   stream ADDED / MODIFIED / DELETED as JSON lines, send BOOKMARK events when
 *   `allowWatchBookmarks=true`, and answer a resourceVersion older than the retained
 *   history with an ERROR event carrying a 410 Expired Status, then close (as the real
 *   server does after etcd compaction);
 * - Status objects with `reason` for 404 NotFound, 409 AlreadyExists / Conflict,
 *   410 Expired, 422 Invalid, 401 Unauthorized; bearer-token authentication;
 * - label and field selectors; Pod immutability (only the fields Kubernetes lets a
 *   client change: activeDeadlineSeconds down, schedulingGates removed, labels,
 *   annotations, images); JSON patch and merge patch; delete with grace period and
 *   uid preconditions; the pods/binding and pods/log subresources (follow, tailLines,
 *   sinceTime truncated to whole seconds as metav1.Time is, timestamps, and the
 *   `stream=Stdout|Stderr` parameter of Kubernetes 1.32's PodLogsQuerySplitStreams).
 *
 * A tiny scheduler places ungated Pods of the default scheduler on the first Ready node
 * whose labels match the nodeSelector; Pods with another schedulerName wait for a
 * Binding. A tiny "kubelet" moves bound Pods Pending -> Running -> Succeeded/Failed by
 * interpreting the `sh -c` scripts the conformance suite uses (echo [>&2], sleep N,
 * exit N, true, false); any image whose name contains "does-not-exist" fails with
 * ErrImagePull and then ImagePullBackOff. It enforces activeDeadlineSeconds, and a
 * stopped program exits with 143 (it "dies on SIGTERM"; a real `sh` as PID 1 ignores
 * SIGTERM and would be SIGKILLed after the grace period, 137).
 *
 * It serves the resource metrics API (metrics.k8s.io/v1beta1 PodMetrics, as metrics-server
 * does) for Pods whose container is running: the figures are whatever a test set with
 * setPodUsage() (else `defaultPodUsage`), written verbatim, so tests choose the quantity
 * forms ("250m", "12345n", "65536Ki"); `metricsApi = false` makes the whole group 404, as
 * on a cluster without metrics-server.
 *
 * It serves HTTPS with a throwaway self-signed certificate (made with the openssl CLI)
 * that the kubeconfig names as the cluster CA, so the client's TLS verification runs;
 * `tls: false` serves plain HTTP (client-node then needs insecure-skip-tls-verify).
 *
 * Every object a client sends (create and replace bodies, Bindings, DeleteOptions) is
 * checked against the official schemas (validate-kube-object.ts, kubernetes-models) and
 * refused with 422 Invalid when it violates them (`validateBodies: false` turns that off).
 *
 * What the fake does NOT do: RBAC, admission (Pod Security, quotas, limit ranges
 * and network policies are stored, not enforced), server-side apply, finalizers,
 * namespace termination (a deleted namespace and its objects vanish at once), pagination
 * (`limit`/`continue`), protobuf, and anything about real containers.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateKubeObject } from './validate-kube-object.js';

type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata: Record<string, any>;
  spec?: any;
  status?: any;
  [k: string]: any;
};

interface ResourceType {
  kind: string;
  apiVersion: string;
  namespaced: boolean;
}

const RESOURCES: Record<string, ResourceType> = {
  namespaces: { kind: 'Namespace', apiVersion: 'v1', namespaced: false },
  nodes: { kind: 'Node', apiVersion: 'v1', namespaced: false },
  pods: { kind: 'Pod', apiVersion: 'v1', namespaced: true },
  services: { kind: 'Service', apiVersion: 'v1', namespaced: true },
  resourcequotas: { kind: 'ResourceQuota', apiVersion: 'v1', namespaced: true },
  limitranges: { kind: 'LimitRange', apiVersion: 'v1', namespaced: true },
  networkpolicies: { kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1', namespaced: true },
  runtimeclasses: { kind: 'RuntimeClass', apiVersion: 'node.k8s.io/v1', namespaced: false },
};

/** Which API group path serves which resources. */
const GROUP_OF: Record<string, string> = {
  namespaces: 'v1',
  nodes: 'v1',
  pods: 'v1',
  services: 'v1',
  resourcequotas: 'v1',
  limitranges: 'v1',
  networkpolicies: 'networking.k8s.io/v1',
  runtimeclasses: 'node.k8s.io/v1',
};

export interface FakeNodeSpec {
  name: string;
  cpu: string;
  memory: string;
  gpu?: number;
  labels?: Record<string, string>;
  /** `spec.taints` of the Node (stored and served; the fake's own scheduler ignores them). */
  taints?: { key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }[];
  /** Allocatable "pods" (the kubelet's maxPods). @default 110 */
  maxPods?: number;
  ready?: boolean;
}

export interface FakeKubeApiServerOptions {
  /** @default a random token; requests without `Authorization: Bearer <token>` get 401 */
  token?: string;
  /** @default one node "fake-node-1" with 4 CPUs and 8Gi */
  nodes?: FakeNodeSpec[];
  /** @default 1_000 */
  bookmarkIntervalMs?: number;
  /** Watch events kept for resuming; older resourceVersions get 410. @default 10_000 */
  historyLimit?: number;
  /** Delay of the fake scheduler and of each kubelet step. @default 20 */
  stepDelayMs?: number;
  /** RuntimeClass objects to create. @default ["gvisor"] */
  runtimeClasses?: string[];
  /** HTTPS with a self-signed certificate (needs the openssl CLI). @default true */
  tls?: boolean;
  /** Serve metrics.k8s.io (PodMetrics); switchable later through `metricsApi`. @default true */
  metricsApi?: boolean;
  /** Usage of a running Pod nobody called setPodUsage() for. @default { cpu: "0", memory: "0" } */
  defaultPodUsage?: FakePodUsage;
  /** The `window` of every PodMetrics (a Go duration). @default "15s" */
  metricsWindow?: string;
  /**
   * Validate every object a client sends (create and replace bodies, Bindings, DeleteOptions)
   * against the official schemas (validate-kube-object.ts), answering 422 Invalid as the real
   * server's validation would. @default true
   */
  validateBodies?: boolean;
}

/** The figures the fake's metrics API reports for a Pod's containers, as quantity strings. */
export interface FakePodUsage {
  cpu: string;
  memory: string;
}

/** A self-signed certificate for 127.0.0.1, valid for two days. */
function selfSignedCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fake-kube-tls-'));
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=fake-kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '2', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'pipe' },
    );
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface LogEntry {
  timeMs: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

interface PodProcess {
  uid: string;
  logs: LogEntry[];
  followers: Set<(entry: LogEntry | 'end') => void>;
  timers: Set<NodeJS.Timeout>;
  ended: boolean;
  deadlineTimer?: NodeJS.Timeout;
}

interface HistoryEvent {
  rv: number;
  resource: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface WatchConn {
  resource: string;
  namespace: string | undefined;
  labelSelector: LabelRequirement[];
  fieldSelector: FieldRequirement[];
  res: ServerResponse;
  close(): void;
}

interface LabelRequirement {
  key: string;
  op: '=' | '!=' | 'exists' | '!exists' | 'in' | 'notin';
  values: string[];
}
interface FieldRequirement {
  path: string;
  op: '=' | '!=';
  value: string;
}

class HttpError extends Error {
  constructor(readonly status: Record<string, unknown>) {
    super(String(status.message));
  }
}

const statusObject = (code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message,
  reason,
  ...(details ? { details } : {}),
  code,
});

const notFound = (resource: string, name: string): HttpError =>
  new HttpError(statusObject(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource }));
const alreadyExists = (resource: string, name: string): HttpError =>
  new HttpError(statusObject(409, 'AlreadyExists', `${resource} "${name}" already exists`, { name, kind: resource }));
const conflict = (resource: string, name: string, why: string): HttpError =>
  new HttpError(statusObject(409, 'Conflict', `Operation cannot be fulfilled on ${resource} "${name}": ${why}`, { name, kind: resource }));
const invalid = (kind: string, name: string, why: string): HttpError =>
  new HttpError(statusObject(422, 'Invalid', `${kind} "${name}" is invalid: ${why}`, { name, kind }));
const badRequest = (message: string): HttpError => new HttpError(statusObject(400, 'BadRequest', message));

const clone = <T>(value: T): T => structuredClone(value);
const METRICS_GROUP = 'metrics.k8s.io';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** RFC 3339 with nanoseconds, as the kubelet writes log timestamps. */
const nanoTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '000000Z');
/** metav1.Time: whole seconds. */
const secondsTime = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

export function parseLabelSelector(selector: string | null): LabelRequirement[] {
  if (!selector) return [];
  const out: LabelRequirement[] = [];
  // Split on commas outside parentheses.
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  parts.push(current);
  for (const raw of parts) {
    const part = raw.trim();
    if (part === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part))) {
      out.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()) });
    } else if ((m = /^([^\s!=]+)\s*!=\s*(\S*)$/.exec(part))) {
      out.push({ key: m[1]!, op: '!=', values: [m[2]!] });
    } else if ((m = /^([^\s!=]+)\s*==?\s*(\S*)$/.exec(part))) {
      out.push({ key: m[1]!, op: '=', values: [m[2]!] });
    } else if ((m = /^!([^\s!=]+)$/.exec(part))) {
      out.push({ key: m[1]!, op: '!exists', values: [] });
    } else if ((m = /^([^\s!=]+)$/.exec(part))) {
      out.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw badRequest(`unable to parse requirement: ${part}`);
    }
  }
  return out;
}

function matchesLabels(labels: Record<string, string> | undefined, reqs: LabelRequirement[]): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(l, r.key);
    switch (r.op) {
      case '=':
        return has && l[r.key] === r.values[0];
      case '!=':
        return !has || l[r.key] !== r.values[0];
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case 'in':
        return has && r.values.includes(l[r.key]!);
      case 'notin':
        return !has || !r.values.includes(l[r.key]!);
    }
  });
}

const FIELDS: Record<string, (o: Obj) => string> = {
  'metadata.name': (o) => o.metadata.name ?? '',
  'metadata.namespace': (o) => o.metadata.namespace ?? '',
  'spec.nodeName': (o) => o.spec?.nodeName ?? '',
  'spec.schedulerName': (o) => o.spec?.schedulerName ?? '',
  'status.phase': (o) => o.status?.phase ?? '',
};

function parseFieldSelector(selector: string | null): FieldRequirement[] {
  if (!selector) return [];
  return selector.split(',').map((part) => {
    const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(part.trim());
    if (!m || !FIELDS[m[1]!]) throw badRequest(`"${part}" is not a known field selector: only ${Object.keys(FIELDS).join(', ')}`);
    return { path: m[1]!, op: m[2] === '!=' ? '!=' : '=', value: m[3]! };
  });
}

const matchesFields = (o: Obj, reqs: FieldRequirement[]): boolean =>
  reqs.every((r) => (r.op === '=' ? FIELDS[r.path]!(o) === r.value : FIELDS[r.path]!(o) !== r.value));

/** RFC 7386 merge patch. */
function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** RFC 6902 JSON patch: add, remove, replace, test. */
function jsonPatch(target: any, ops: any[]): any {
  const doc = clone(target);
  for (const op of ops) {
    const path = String(op.path ?? '')
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (path.length === 0) throw badRequest('json patch: empty path');
    let parent: any = doc;
    for (const segment of path.slice(0, -1)) {
      parent = parent?.[Array.isArray(parent) ? Number(segment) : segment];
      if (parent === undefined) throw new HttpError(statusObject(422, 'Invalid', `json patch: path ${op.path} does not exist`));
    }
    const last = path[path.length - 1]!;
    const key: string | number = Array.isArray(parent) ? (last === '-' ? parent.length : Number(last)) : last;
    switch (op.op) {
      case 'add':
        if (Array.isArray(parent)) parent.splice(key as number, 0, clone(op.value));
        else parent[key] = clone(op.value);
        break;
      case 'replace':
        if (!(key in parent)) throw new HttpError(statusObject(422, 'Invalid', `json patch: replace of missing ${op.path}`));
        parent[key] = clone(op.value);
        break;
      case 'remove':
        if (!(key in parent)) throw new HttpError(statusObject(422, 'Invalid', `json patch: remove of missing ${op.path}`));
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key];
        break;
      case 'test':
        if (JSON.stringify(parent[key]) !== JSON.stringify(op.value)) throw new HttpError(statusObject(422, 'Invalid', `json patch: test failed at ${op.path}`));
        break;
      default:
        throw badRequest(`json patch: unsupported op ${op.op}`);
    }
  }
  return doc;
}

/** One statement of the fake shell. */
type Step = { kind: 'echo'; text: string; stream: 'stdout' | 'stderr' } | { kind: 'sleep'; ms: number } | { kind: 'exit'; code: number } | { kind: 'status'; code: number; stderr?: string };

/** Interprets the tiny `sh -c` dialect the tests use; anything else sleeps forever. */
export function fakeProgram(command: string[] | undefined, args: string[] | undefined): Step[] {
  const argv = [...(command ?? []), ...(args ?? [])];
  if (argv.length < 3 || argv[0] !== 'sh' || argv[1] !== '-c') return [{ kind: 'sleep', ms: Number.POSITIVE_INFINITY }];
  const steps: Step[] = [];
  for (const rawStatement of argv[2]!.split(/;|&&|\n/)) {
    const statement = rawStatement.trim();
    if (statement === '') continue;
    const toStderr = /\s*>&2\s*$/.test(statement);
    const words = statement.replace(/\s*>&2\s*$/, '').match(/'[^']*'|"[^"]*"|\S+/g) ?? [];
    const unquoted = words.map((w) => w.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1'));
    const [name, ...rest] = unquoted;
    if (name === 'echo') steps.push({ kind: 'echo', text: rest.join(' '), stream: toStderr ? 'stderr' : 'stdout' });
    else if (name === 'sleep') steps.push({ kind: 'sleep', ms: rest[0] === 'infinity' ? Number.POSITIVE_INFINITY : Number(rest[0]) * 1000 });
    else if (name === 'exit') steps.push({ kind: 'exit', code: Number(rest[0] ?? 0) });
    else if (name === 'true' || name === ':') steps.push({ kind: 'status', code: 0 });
    else if (name === 'false') steps.push({ kind: 'status', code: 1 });
    else steps.push({ kind: 'status', code: 127, stderr: `sh: ${name}: not found` });
  }
  return steps;
}

/** A protocol-faithful FAKE Kubernetes API server over real HTTP; see the file comment. */
export class FakeKubeApiServer {
  readonly token: string;
  /** Every request, for tests that assert how the client talks (e.g. no per-Pod polling). */
  readonly requests: { method: string; path: string; query: string }[] = [];
  private server!: Server;
  private baseUrl = '';
  private certificate: { key: string; cert: string } | undefined;
  private rv = 0;
  /** Watches from below this resourceVersion get 410 Gone. */
  private oldestRv = 0;
  private readonly history: HistoryEvent[] = [];
  private readonly objects = new Map<string, Obj>();
  private readonly watches = new Set<WatchConn>();
  private readonly processes = new Map<string, PodProcess>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly options: Required<Omit<FakeKubeApiServerOptions, 'tls'>> & { tls: boolean };
  private closed = false;
  /** Whether metrics.k8s.io is served; false: every path of the group answers 404. */
  metricsApi: boolean;
  private readonly podUsage = new Map<string, FakePodUsage>();

  private constructor(options: FakeKubeApiServerOptions) {
    this.options = {
      token: options.token ?? randomBytes(16).toString('hex'),
      nodes: options.nodes ?? [{ name: 'fake-node-1', cpu: '4', memory: '8Gi' }],
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? 1_000,
      historyLimit: options.historyLimit ?? 10_000,
      stepDelayMs: options.stepDelayMs ?? 20,
      runtimeClasses: options.runtimeClasses ?? ['gvisor'],
      tls: options.tls ?? true,
      metricsApi: options.metricsApi ?? true,
      defaultPodUsage: options.defaultPodUsage ?? { cpu: '0', memory: '0' },
      metricsWindow: options.metricsWindow ?? '15s',
      validateBodies: options.validateBodies ?? true,
    };
    this.token = this.options.token;
    this.metricsApi = this.options.metricsApi;
  }

  static async start(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(options);
    for (const node of fake.options.nodes) fake.addNode(node);
    for (const handler of fake.options.runtimeClasses) {
      fake.write('runtimeclasses', { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: handler }, handler: handler === 'gvisor' ? 'runsc' : handler }, 'ADDED');
    }
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      fake.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) fake.send(res, 500, statusObject(500, 'InternalError', String(err)));
        else res.destroy();
      });
    };
    if (fake.options.tls) {
      fake.certificate = selfSignedCertificate();
      fake.server = createHttpsServer({ key: fake.certificate.key, cert: fake.certificate.cert }, handler);
    } else {
      fake.server = createServer(handler);
    }
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.baseUrl = `${fake.options.tls ? 'https' : 'http'}://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  get url(): string {
    return this.baseUrl;
  }

  /** A kubeconfig (YAML) whose current context points at this fake with its token. */
  kubeconfig(context = 'fake'): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      `current-context: ${context}`,
      'clusters:',
      `- name: ${context}`,
      '  cluster:',
      `    server: ${this.baseUrl}`,
      this.certificate ? `    certificate-authority-data: ${Buffer.from(this.certificate.cert).toString('base64')}` : '    insecure-skip-tls-verify: true',
      'users:',
      `- name: ${context}-user`,
      '  user:',
      `    token: ${this.token}`,
      'contexts:',
      `- name: ${context}`,
      '  context:',
      `    cluster: ${context}`,
      `    user: ${context}-user`,
      '',
    ].join('\n');
  }

  /** Writes kubeconfig() to DIR/kubeconfig and returns the path. */
  writeKubeconfig(dir: string, context = 'fake'): string {
    const path = join(dir, 'kubeconfig');
    writeFileSync(path, this.kubeconfig(context), { mode: 0o600 });
    return path;
  }

  /** The current resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /**
   * Simulates etcd compaction: forgets the watch history, so any watch resuming from a
   * resourceVersion before now gets 410 Gone. With `dropWatches`, open watches are cut
   * too, so clients must reconnect (and then relist).
   */
  compact(options: { dropWatches?: boolean } = {}): void {
    this.rv++;
    this.oldestRv = this.rv;
    this.history.length = 0;
    if (options.dropWatches) this.dropWatches();
  }

  /** Ends every open watch connection, as a load balancer or apiserver restart would. */
  dropWatches(): void {
    for (const w of [...this.watches]) w.close();
  }

  /** Number of open watch connections. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** A stored object (a copy), for assertions. */
  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.objects.get(this.key(resource, namespace, name));
    return o ? clone(o) : undefined;
  }

  /** Every stored object of a resource (copies). */
  all(resource: string): Obj[] {
    return [...this.objects.entries()].filter(([k]) => k.startsWith(`${resource}/`)).map(([, o]) => clone(o));
  }

  /**
   * Sets what the metrics API reports for the Pod `namespace/name` while its container runs
   * (kept across a Pod recreated under the same name); undefined: back to the default.
   */
  setPodUsage(namespace: string, name: string, usage: FakePodUsage | undefined): void {
    if (usage) this.podUsage.set(`${namespace}/${name}`, usage);
    else this.podUsage.delete(`${namespace}/${name}`);
  }

  /** Deletes a Pod behind the client's back (no grace), e.g. while its watch is down. */
  deletePodNow(namespace: string, name: string): void {
    const pod = this.objects.get(this.key('pods', namespace, name));
    if (pod) this.removePod(pod);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.dropWatches();
    for (const t of this.timers) clearTimeout(t);
    for (const p of this.processes.values()) this.endProcess(p);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- storage -----------------------------------------------------------------------

  private key(resource: string, namespace: string | undefined, name: string): string {
    return `${resource}/${RESOURCES[resource]!.namespaced ? namespace ?? '' : ''}/${name}`;
  }

  private addNode(spec: FakeNodeSpec): void {
    const resources: Record<string, string> = { cpu: spec.cpu, memory: spec.memory, pods: String(spec.maxPods ?? 110), 'nvidia.com/gpu': String(spec.gpu ?? 0) };
    this.write(
      'nodes',
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: spec.name, labels: { 'kubernetes.io/hostname': spec.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', ...spec.labels } },
        spec: spec.taints ? { taints: spec.taints.map((t) => ({ ...t })) } : {},
        status: {
          capacity: { ...resources },
          allocatable: { ...resources },
          conditions: [{ type: 'Ready', status: spec.ready === false ? 'False' : 'True' }],
          nodeInfo: { operatingSystem: 'linux', architecture: 'amd64', kubeletVersion: 'v1.31.0-fake', containerRuntimeVersion: 'fake://1.0' },
        },
      },
      'ADDED',
    );
  }

  /** Stores an object with a new resourceVersion and tells the watches. */
  private write(resource: string, object: Obj, type: 'ADDED' | 'MODIFIED' | 'DELETED'): Obj {
    this.rv++;
    const k = this.key(resource, object.metadata.namespace, object.metadata.name);
    object.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.objects.delete(k);
    else this.objects.set(k, object);
    const event: HistoryEvent = { rv: this.rv, resource, type, object: clone(object) };
    this.history.push(event);
    if (this.history.length > this.options.historyLimit) {
      const dropped = this.history.shift()!;
      this.oldestRv = dropped.rv;
    }
    for (const w of this.watches) if (this.watchMatches(w, event)) this.sendEvent(w.res, event.type, event.object);
    return object;
  }

  private watchMatches(w: WatchConn, e: HistoryEvent): boolean {
    return (
      w.resource === e.resource &&
      (w.namespace === undefined || e.object.metadata.namespace === w.namespace) &&
      matchesLabels(e.object.metadata.labels, w.labelSelector) &&
      matchesFields(e.object, w.fieldSelector)
    );
  }

  private sendEvent(res: ServerResponse, type: string, object: unknown): void {
    res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  // ---- HTTP --------------------------------------------------------------------------

  private send(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async readBody(req: IncomingMessage): Promise<any> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw badRequest('the request body is not JSON');
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query: url.search });
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.send(res, 401, statusObject(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    try {
      await this.route(req, res, url);
    } catch (err) {
      if (err instanceof HttpError) this.send(res, Number(err.status.code), err.status);
      else throw err;
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    if (url.pathname === '/version') {
      this.send(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0-fake', platform: 'linux/amd64' });
      return;
    }
    if (url.pathname === '/healthz' || url.pathname === '/readyz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (segments[0] === 'apis' && segments[1] === METRICS_GROUP) return this.metrics(res, url, method, segments.slice(2));
    let group: string;
    let rest: string[];
    if (segments[0] === 'api' && segments[1] === 'v1') {
      group = 'v1';
      rest = segments.slice(2);
    } else if (segments[0] === 'apis' && segments.length >= 3) {
      group = `${segments[1]}/${segments[2]}`;
      rest = segments.slice(3);
    } else {
      throw new HttpError(statusObject(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    }
    let namespace: string | undefined;
    let resource: string;
    let name: string | undefined;
    let sub: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      [resource, name, sub] = rest.slice(2) as [string, string | undefined, string | undefined];
    } else {
      [resource, name, sub] = rest as [string, string | undefined, string | undefined];
    }
    const type = RESOURCES[resource ?? ''];
    if (!type || GROUP_OF[resource] !== group || (namespace !== undefined && !type.namespaced)) {
      throw new HttpError(statusObject(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    }
    if (namespace !== undefined && !this.objects.has(this.key('namespaces', undefined, namespace)) && method !== 'GET') {
      throw notFound('namespaces', namespace);
    }
    if (sub !== undefined) {
      if (resource === 'pods' && sub === 'log' && method === 'GET') return this.podLog(res, url, namespace!, name!);
      if (resource === 'pods' && sub === 'binding' && method === 'POST') return this.bind(res, namespace!, name!, await this.readBody(req));
      throw new HttpError(statusObject(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    }
    if (name === undefined) {
      if (method === 'GET' && url.searchParams.get('watch') === 'true') return this.watch(req, res, url, resource, namespace);
      if (method === 'GET') return this.list(res, url, resource, namespace);
      if (method === 'POST') return this.create(res, url, resource, namespace, await this.readBody(req));
    } else {
      if (method === 'GET') return this.send(res, 200, this.mustGet(resource, namespace, name));
      if (method === 'PUT') return this.replace(res, resource, namespace, name, await this.readBody(req));
      if (method === 'PATCH') return this.patch(res, req, resource, namespace, name, await this.readBody(req));
      if (method === 'DELETE') return this.remove(res, url, resource, namespace, name, await this.readBody(req));
    }
    throw new HttpError(statusObject(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
  }

  /** The schema check of a request body (validateBodies); a violation is 422 Invalid. */
  private validateBody(object: Obj | { apiVersion?: string; kind?: string; metadata?: Record<string, any> }): void {
    if (!this.options.validateBodies) return;
    try {
      validateKubeObject(object);
    } catch (err) {
      throw invalid(object.kind ?? 'Object', String(object.metadata?.name ?? ''), (err as Error).message);
    }
  }

  private mustGet(resource: string, namespace: string | undefined, name: string): Obj {
    const o = this.objects.get(this.key(resource, namespace, name));
    if (!o) throw notFound(resource, name);
    return o;
  }

  private list(res: ServerResponse, url: URL, resource: string, namespace: string | undefined): void {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const items = [...this.objects.entries()]
      .filter(([k]) => k.startsWith(`${resource}/`))
      .map(([, o]) => o)
      .filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && matchesLabels(o.metadata.labels, labels) && matchesFields(o, fields));
    const type = RESOURCES[resource]!;
    this.send(res, 200, { kind: `${type.kind}List`, apiVersion: type.apiVersion, metadata: { resourceVersion: String(this.rv) }, items });
  }

  private watch(req: IncomingMessage, res: ServerResponse, url: URL, resource: string, namespace: string | undefined): void {
    const labelSelector = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fieldSelector = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const rvParam = url.searchParams.get('resourceVersion');
    const bookmarks = url.searchParams.get('allowWatchBookmarks') === 'true';
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();

    const type = RESOURCES[resource]!;
    const from = rvParam === null || rvParam === '' || rvParam === '0' ? undefined : Number(rvParam);
    if (from !== undefined && (!Number.isInteger(from) || from < this.oldestRv)) {
      // The real server answers 200 and then one ERROR event with the Status.
      this.sendEvent(res, 'ERROR', statusObject(410, 'Expired', `too old resource version: ${rvParam} (${this.oldestRv})`));
      res.end();
      return;
    }
    let bookmarkTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const conn: WatchConn = {
      resource,
      namespace,
      labelSelector,
      fieldSelector,
      res,
      close: () => {
        if (!this.watches.delete(conn)) return;
        clearInterval(bookmarkTimer);
        clearTimeout(timeoutTimer);
        res.end();
      },
    };
    if (from === undefined) {
      // No resourceVersion: synthetic ADDED for everything that exists now.
      for (const [k, o] of this.objects) {
        if (!k.startsWith(`${resource}/`)) continue;
        const e: HistoryEvent = { rv: Number(o.metadata.resourceVersion), resource, type: 'ADDED', object: o };
        if (this.watchMatches(conn, e)) this.sendEvent(res, 'ADDED', o);
      }
    } else {
      for (const e of this.history) if (e.rv > from && this.watchMatches(conn, e)) this.sendEvent(res, e.type, e.object);
    }
    this.watches.add(conn);
    if (bookmarks) {
      bookmarkTimer = setInterval(() => {
        this.sendEvent(res, 'BOOKMARK', { kind: type.kind, apiVersion: type.apiVersion, metadata: { resourceVersion: String(this.rv) } });
      }, this.options.bookmarkIntervalMs);
    }
    if (timeoutSeconds > 0) timeoutTimer = setTimeout(() => conn.close(), timeoutSeconds * 1000);
    req.on('close', () => conn.close());
  }

  private create(res: ServerResponse, url: URL, resource: string, namespace: string | undefined, body: any): void {
    const type = RESOURCES[resource]!;
    if (!body || typeof body !== 'object' || !body.metadata) throw badRequest('the body must be an object with metadata');
    if (body.kind !== undefined && body.kind !== type.kind) throw badRequest(`the body is a ${body.kind}, not a ${type.kind}`);
    this.validateBody({ apiVersion: type.apiVersion, kind: type.kind, ...body });
    const name: string = body.metadata.name ?? (body.metadata.generateName ? `${body.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}` : '');
    const nameOk = resource === 'namespaces' || resource === 'services' ? DNS_LABEL.test(name) && name.length <= 63 : DNS_SUBDOMAIN.test(name) && name.length <= 253;
    if (!nameOk) throw invalid(type.kind, name, `metadata.name: Invalid value: "${name}": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'`);
    if (body.metadata.namespace !== undefined && namespace !== undefined && body.metadata.namespace !== namespace) {
      throw badRequest(`the namespace of the provided object does not match the namespace sent on the request`);
    }
    if (this.objects.has(this.key(resource, namespace, name))) throw alreadyExists(resource, name);
    const object: Obj = clone(body);
    object.apiVersion = type.apiVersion;
    object.kind = type.kind;
    object.metadata = { ...object.metadata, name, uid: randomUUID(), creationTimestamp: secondsTime(Date.now()) };
    delete object.metadata.generateName;
    if (type.namespaced) object.metadata.namespace = namespace;
    if (resource === 'namespaces') {
      object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': name };
      object.status = { phase: 'Active' };
    }
    if (resource === 'pods') this.defaultPod(object);
    if (resource === 'services' && (object.spec?.type ?? 'ClusterIP') === 'ClusterIP' && !object.spec?.clusterIP) {
      // The real server allocates one from the service CIDR; it is immutable afterwards.
      object.spec = { ...object.spec, clusterIP: `10.96.${(this.rv >> 8) & 255}.${this.rv & 255}` };
    }
    if (url.searchParams.get('dryRun') === 'All') {
      this.send(res, 201, object);
      return;
    }
    this.write(resource, object, 'ADDED');
    this.send(res, 201, object);
    if (resource === 'pods') this.schedulePodStep(object);
  }

  private defaultPod(pod: Obj): void {
    const spec = pod.spec;
    if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) {
      throw invalid('Pod', pod.metadata.name, 'spec.containers: Required value');
    }
    for (const c of spec.containers) {
      if (!c.name || !c.image) throw invalid('Pod', pod.metadata.name, 'spec.containers[0]: name and image are required');
    }
    spec.restartPolicy ??= 'Always';
    spec.schedulerName ??= 'default-scheduler';
    spec.terminationGracePeriodSeconds ??= 30;
    spec.dnsPolicy ??= 'ClusterFirst';
    const gated = (spec.schedulingGates ?? []).length > 0;
    pod.status = {
      phase: 'Pending',
      qosClass: 'Guaranteed',
      conditions: gated ? [{ type: 'PodScheduled', status: 'False', reason: 'SchedulingGated', message: 'Scheduling is blocked due to non-empty scheduling gates' }] : [],
    };
  }

  private replace(res: ServerResponse, resource: string, namespace: string | undefined, name: string, body: any): void {
    const current = this.mustGet(resource, namespace, name);
    if (!body?.metadata) throw badRequest('the body must be an object with metadata');
    if (body.metadata.name !== name) throw badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
    this.validateBody({ apiVersion: current.apiVersion, kind: current.kind, ...body });
    if (body.metadata.resourceVersion !== undefined && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(resource, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    if (resource === 'pods') this.checkPodUpdate(current, body);
    const next: Obj = clone(body);
    next.apiVersion = current.apiVersion;
    next.kind = current.kind;
    next.metadata = { ...next.metadata, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp, namespace: current.metadata.namespace };
    if (resource === 'pods') next.status = current.status;
    this.write(resource, next, 'MODIFIED');
    this.send(res, 200, next);
    if (resource === 'pods') this.podChanged(current, next);
  }

  private patch(res: ServerResponse, req: IncomingMessage, resource: string, namespace: string | undefined, name: string, body: any): void {
    const current = this.mustGet(resource, namespace, name);
    const contentType = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    let next: Obj;
    if (contentType === 'application/json-patch+json') {
      if (!Array.isArray(body)) throw badRequest('a JSON patch must be an array of operations');
      next = jsonPatch(current, body);
    } else if (contentType === 'application/merge-patch+json' || contentType === 'application/strategic-merge-patch+json') {
      // Strategic merge is treated as a plain merge patch: enough for the fields the adapter patches.
      next = mergePatch(current, body);
    } else {
      throw new HttpError(statusObject(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`));
    }
    if (next.metadata?.name !== name || next.metadata?.uid !== current.metadata.uid) throw invalid(current.kind ?? resource, name, 'metadata.name and metadata.uid are immutable');
    if (resource === 'pods') {
      this.checkPodUpdate(current, next);
      next.status = current.status;
    }
    this.write(resource, next, 'MODIFIED');
    this.send(res, 200, next);
    if (resource === 'pods') this.podChanged(current, next);
  }

  /** Kubernetes' Pod update validation: only a few spec fields may change. */
  private checkPodUpdate(current: Obj, next: Obj): void {
    const name = current.metadata.name;
    const a = clone(current.spec);
    const b = clone(next.spec ?? {});
    const oldDeadline = a.activeDeadlineSeconds;
    const newDeadline = b.activeDeadlineSeconds;
    if (newDeadline !== oldDeadline) {
      if (newDeadline === undefined || newDeadline === null) throw invalid('Pod', name, 'spec.activeDeadlineSeconds: Invalid value: must not be removed once set');
      if (!Number.isInteger(newDeadline) || newDeadline < 1) throw invalid('Pod', name, 'spec.activeDeadlineSeconds: Invalid value: must be a positive integer');
      if (oldDeadline !== undefined && newDeadline > oldDeadline) throw invalid('Pod', name, 'spec.activeDeadlineSeconds: Invalid value: must be less than or equal to the previous value');
    }
    const oldGates: string[] = (a.schedulingGates ?? []).map((g: { name: string }) => g.name);
    const newGates: string[] = (b.schedulingGates ?? []).map((g: { name: string }) => g.name);
    if (newGates.some((g) => !oldGates.includes(g))) throw invalid('Pod', name, 'spec.schedulingGates: Forbidden: only deletion is allowed');
    if (newGates.length > 0 && !current.spec.schedulingGates) throw invalid('Pod', name, 'spec.schedulingGates: Forbidden: only deletion is allowed');
    for (const s of [a, b]) {
      delete s.activeDeadlineSeconds;
      delete s.schedulingGates;
      for (const c of s.containers ?? []) delete c.image;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      throw invalid('Pod', name, 'spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.schedulingGates`');
    }
  }

  private remove(res: ServerResponse, url: URL, resource: string, namespace: string | undefined, name: string, body: any): void {
    const current = this.mustGet(resource, namespace, name);
    if (body !== undefined) this.validateBody({ apiVersion: 'v1', kind: 'DeleteOptions', ...body });
    const preconditionUid = body?.preconditions?.uid;
    if (preconditionUid !== undefined && preconditionUid !== current.metadata.uid) {
      throw conflict(resource, name, `Precondition failed: UID in precondition: ${preconditionUid}, UID in object meta: ${current.metadata.uid}`);
    }
    const graceParam = url.searchParams.get('gracePeriodSeconds') ?? body?.gracePeriodSeconds;
    if (resource === 'pods') {
      this.deletePod(current, graceParam === undefined || graceParam === null ? undefined : Number(graceParam));
      this.send(res, 200, this.objects.get(this.key('pods', namespace, name)) ?? current);
      return;
    }
    if (resource === 'namespaces') {
      for (const [k, o] of [...this.objects]) {
        if (o.metadata.namespace === name && k.split('/')[1] === name) {
          if (k.startsWith('pods/')) this.removePod(o);
          else this.write(k.split('/')[0]!, o, 'DELETED');
        }
      }
    }
    this.write(resource, current, 'DELETED');
    this.send(res, 200, current);
  }

  // ---- metrics.k8s.io ------------------------------------------------------------------

  /** metrics-server's API: discovery, and PodMetrics lists and gets (cluster-wide or per namespace). */
  private metrics(res: ServerResponse, url: URL, method: string, rest: string[]): void {
    const missing = (): HttpError => new HttpError(statusObject(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    if (!this.metricsApi || rest[0] !== 'v1beta1') throw missing();
    if (method !== 'GET') throw new HttpError(statusObject(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
    if (rest.length === 1) {
      this.send(res, 200, {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: `${METRICS_GROUP}/v1beta1`,
        resources: [
          { name: 'nodes', singularName: '', namespaced: false, kind: 'NodeMetrics', verbs: ['get', 'list'] },
          { name: 'pods', singularName: '', namespaced: true, kind: 'PodMetrics', verbs: ['get', 'list'] },
        ],
      });
      return;
    }
    let namespace: string | undefined;
    let tail = rest.slice(1);
    if (tail[0] === 'namespaces' && tail.length >= 3) {
      namespace = tail[1];
      tail = tail.slice(2);
    }
    if (tail[0] !== 'pods' || tail.length > 2) throw missing();
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const items = this.all('pods')
      .filter((p) => (namespace === undefined || p.metadata.namespace === namespace) && (tail[1] === undefined || p.metadata.name === tail[1]) && matchesLabels(p.metadata.labels, labels))
      .map((p) => this.podMetrics(p))
      .filter((m) => m !== undefined);
    if (tail[1] !== undefined) {
      // A Pod that exists but has not been scraped (not running) is a 404 too, as in metrics-server.
      if (items.length === 0) throw new HttpError(statusObject(404, 'NotFound', `podmetrics.metrics.k8s.io "${namespace ?? ''}/${tail[1]}" not found`, { name: tail[1], group: METRICS_GROUP, kind: 'pods' }));
      this.send(res, 200, items[0]);
      return;
    }
    this.send(res, 200, { kind: 'PodMetricsList', apiVersion: `${METRICS_GROUP}/v1beta1`, metadata: {}, items });
  }

  /** The PodMetrics of a Pod whose container runs, else undefined (metrics-server lists only scraped Pods). */
  private podMetrics(pod: Obj): Obj | undefined {
    const k = this.key('pods', pod.metadata.namespace, pod.metadata.name);
    const proc = this.processes.get(k);
    if (pod.status?.phase !== 'Running' || !proc || proc.uid !== pod.metadata.uid || proc.ended) return undefined;
    const usage = this.podUsage.get(`${pod.metadata.namespace}/${pod.metadata.name}`) ?? this.options.defaultPodUsage;
    return {
      kind: 'PodMetrics',
      apiVersion: `${METRICS_GROUP}/v1beta1`,
      metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace, labels: { ...pod.metadata.labels }, creationTimestamp: secondsTime(Date.now()) },
      timestamp: secondsTime(Date.now()),
      window: this.options.metricsWindow,
      containers: pod.spec.containers.map((c: { name: string }) => ({ name: c.name, usage: { cpu: usage.cpu, memory: usage.memory } })),
    };
  }

  // ---- pods: scheduling, the kubelet simulator, deletion, logs ------------------------

  private podChanged(before: Obj, after: Obj): void {
    if ((before.spec.schedulingGates ?? []).length > 0 && (after.spec.schedulingGates ?? []).length === 0) {
      const pod = this.objects.get(this.key('pods', after.metadata.namespace, after.metadata.name))!;
      pod.status.conditions = (pod.status.conditions ?? []).filter((c: { type: string }) => c.type !== 'PodScheduled');
      this.schedulePodStep(pod);
    }
    if (before.spec.activeDeadlineSeconds !== after.spec.activeDeadlineSeconds) this.armDeadline(after);
  }

  private updatePodStatus(pod: Obj, mutate: (p: Obj) => void): Obj | undefined {
    const current = this.objects.get(this.key('pods', pod.metadata.namespace, pod.metadata.name));
    if (!current || current.metadata.uid !== pod.metadata.uid) return undefined;
    const next = clone(current);
    mutate(next);
    return this.write('pods', next, 'MODIFIED');
  }

  /** The fake scheduler and kubelet: one step per call, each after stepDelayMs. */
  private schedulePodStep(pod: Obj): void {
    this.later(this.options.stepDelayMs, () => this.podStep(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid));
  }

  private podStep(namespace: string, name: string, uid: string): void {
    const pod = this.objects.get(this.key('pods', namespace, name));
    if (!pod || pod.metadata.uid !== uid || pod.metadata.deletionTimestamp) return;
    if ((pod.spec.schedulingGates ?? []).length > 0) return;
    if (!pod.spec.nodeName) {
      if (pod.spec.schedulerName !== 'default-scheduler') return; // waits for a Binding
      const node = this.all('nodes').find(
        (n) =>
          n.status.conditions.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') &&
          Object.entries(pod.spec.nodeSelector ?? {}).every(([k, v]) => n.metadata.labels?.[k] === v),
      );
      if (!node) {
        this.updatePodStatus(pod, (p) => {
          p.status.conditions = [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available' }];
        });
        return;
      }
      // Assigning spec.nodeName is the scheduler's Binding; the fake writes it directly.
      const bound = this.updatePodStatus(pod, (p) => {
        p.spec.nodeName = node.metadata.name;
        p.status.conditions = [{ type: 'PodScheduled', status: 'True' }];
      });
      if (bound) this.schedulePodStep(bound);
      return;
    }
    if (!this.objects.has(this.key('nodes', undefined, pod.spec.nodeName))) return; // bound to a node that does not exist
    if (!pod.status.startTime) {
      const started = this.updatePodStatus(pod, (p) => {
        p.status.startTime = secondsTime(Date.now());
        p.status.hostIP = '10.0.0.1';
        p.status.containerStatuses = p.spec.containers.map((c: { name: string; image: string }) => ({
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          restartCount: 0,
          started: false,
          state: { waiting: { reason: 'ContainerCreating' } },
        }));
      });
      if (started) {
        this.armDeadline(started);
        this.schedulePodStep(started);
      }
      return;
    }
    const container = pod.spec.containers[0];
    const state = pod.status.containerStatuses?.[0]?.state;
    if (state?.waiting?.reason === 'ContainerCreating' || state?.waiting?.reason === 'ErrImagePull') {
      if (String(container.image).includes('does-not-exist')) {
        const reason = state.waiting.reason === 'ContainerCreating' ? 'ErrImagePull' : 'ImagePullBackOff';
        this.updatePodStatus(pod, (p) => {
          p.status.containerStatuses[0].state = {
            waiting: {
              reason,
              message:
                reason === 'ErrImagePull'
                  ? `failed to pull and unpack image "${container.image}": pull access denied, repository does not exist or may require authorization`
                  : `Back-off pulling image "${container.image}"`,
            },
          };
        });
        if (reason === 'ErrImagePull') this.later(500, () => this.podStep(namespace, name, uid));
        return;
      }
      this.runContainer(pod);
    }
  }

  private runContainer(pod: Obj): void {
    const container = pod.spec.containers[0];
    const startedMs = Date.now();
    const running = this.updatePodStatus(pod, (p) => {
      p.status.phase = 'Running';
      p.status.podIP = '10.244.0.10';
      p.status.conditions = [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Initialized', status: 'True' },
        { type: 'ContainersReady', status: 'True' },
        { type: 'Ready', status: 'True' },
      ];
      p.status.containerStatuses[0] = { ...p.status.containerStatuses[0], ready: true, started: true, state: { running: { startedAt: secondsTime(startedMs) } } };
    });
    if (!running) return;
    const proc: PodProcess = { uid: pod.metadata.uid, logs: [], followers: new Set(), timers: new Set(), ended: false };
    this.processes.set(this.key('pods', pod.metadata.namespace, pod.metadata.name), proc);
    const steps = fakeProgram(container.command, container.args);
    let status = 0;
    const next = (i: number): void => {
      if (proc.ended) return;
      if (i >= steps.length) {
        this.terminate(pod, proc, status, startedMs);
        return;
      }
      const step = steps[i]!;
      switch (step.kind) {
        case 'echo':
          this.emitLog(proc, step.stream, step.text);
          status = 0;
          return next(i + 1);
        case 'status':
          if (step.stderr) this.emitLog(proc, 'stderr', step.stderr);
          status = step.code;
          return next(i + 1);
        case 'exit':
          this.terminate(pod, proc, step.code, startedMs);
          return;
        case 'sleep': {
          status = 0;
          if (!Number.isFinite(step.ms)) return;
          const t = setTimeout(() => {
            proc.timers.delete(t);
            next(i + 1);
          }, step.ms);
          proc.timers.add(t);
          return;
        }
      }
    };
    next(0);
  }

  private emitLog(proc: PodProcess, stream: 'stdout' | 'stderr', text: string): void {
    const entry: LogEntry = { timeMs: Date.now(), stream, text };
    proc.logs.push(entry);
    for (const f of proc.followers) f(entry);
  }

  private endProcess(proc: PodProcess): void {
    proc.ended = true;
    for (const t of proc.timers) clearTimeout(t);
    proc.timers.clear();
    if (proc.deadlineTimer) clearTimeout(proc.deadlineTimer);
    for (const f of proc.followers) f('end');
    proc.followers.clear();
  }

  /** The container ended: terminated state, and the Pod's phase (restartPolicy Never). */
  private terminate(pod: Obj, proc: PodProcess, exitCode: number, startedMs: number, podReason?: { reason: string; message: string }): Obj | undefined {
    if (proc.ended) return undefined;
    this.endProcess(proc);
    return this.updatePodStatus(pod, (p) => {
      p.status.phase = exitCode === 0 ? 'Succeeded' : 'Failed';
      if (podReason) {
        p.status.phase = 'Failed';
        p.status.reason = podReason.reason;
        p.status.message = podReason.message;
      }
      p.status.conditions = (p.status.conditions ?? []).map((c: { type: string }) => (c.type === 'Ready' || c.type === 'ContainersReady' ? { ...c, status: 'False', reason: 'PodCompleted' } : c));
      p.status.containerStatuses[0] = {
        ...p.status.containerStatuses[0],
        ready: false,
        started: false,
        state: {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? 'Completed' : 'Error',
            startedAt: nanoTime(startedMs).replace(/\.\d+Z$/, 'Z'),
            finishedAt: secondsTime(Date.now()),
          },
        },
      };
    });
  }

  /** activeDeadlineSeconds counts from status.startTime; past it the kubelet kills the Pod. */
  private armDeadline(pod: Obj): void {
    const k = this.key('pods', pod.metadata.namespace, pod.metadata.name);
    const deadline = pod.spec.activeDeadlineSeconds;
    const start = pod.status?.startTime ? Date.parse(pod.status.startTime) : undefined;
    if (deadline === undefined || start === undefined) return;
    const fire = (): void => {
      const current = this.objects.get(k);
      if (!current || current.metadata.uid !== pod.metadata.uid || current.status.phase === 'Succeeded' || current.status.phase === 'Failed') return;
      const reason = { reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' };
      const proc = this.processes.get(k);
      if (proc && proc.uid === pod.metadata.uid && !proc.ended) {
        const startedAt = Date.parse(current.status.containerStatuses[0].state.running?.startedAt ?? current.status.startTime);
        this.terminate(current, proc, 143, startedAt, reason);
      } else {
        this.updatePodStatus(current, (p) => {
          p.status.phase = 'Failed';
          p.status.reason = reason.reason;
          p.status.message = reason.message;
        });
      }
    };
    // Deadline in whole seconds from a startTime of whole seconds, as the kubelet counts.
    const dueMs = Math.max(0, start + deadline * 1000 - Date.now());
    const t = this.later(dueMs, fire);
    const proc = this.processes.get(k);
    if (proc) {
      if (proc.deadlineTimer) clearTimeout(proc.deadlineTimer);
      proc.deadlineTimer = t;
    }
  }

  private deletePod(pod: Obj, graceSeconds: number | undefined): void {
    const k = this.key('pods', pod.metadata.namespace, pod.metadata.name);
    const proc = this.processes.get(k);
    const running = proc && proc.uid === pod.metadata.uid && !proc.ended;
    if (!running || graceSeconds === 0) {
      if (running) this.terminate(pod, proc!, 137, Date.now());
      this.removePod(this.objects.get(k) ?? pod);
      return;
    }
    if (pod.metadata.deletionTimestamp) return;
    const grace = graceSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
    const marked = this.updatePodStatus(pod, (p) => {
      p.metadata.deletionTimestamp = secondsTime(Date.now() + grace * 1000);
      p.metadata.deletionGracePeriodSeconds = grace;
    })!;
    // The fake's programs die on SIGTERM: the kubelet sees the exit after one step.
    this.later(this.options.stepDelayMs, () => {
      const current = this.objects.get(k);
      if (!current || current.metadata.uid !== marked.metadata.uid) return;
      const startedAt = Date.parse(current.status.containerStatuses?.[0]?.state?.running?.startedAt ?? current.status.startTime);
      const ended = this.terminate(current, proc!, 143, startedAt) ?? current;
      this.later(this.options.stepDelayMs, () => {
        const latest = this.objects.get(k);
        if (latest && latest.metadata.uid === ended.metadata.uid) this.removePod(latest);
      });
    });
  }

  private removePod(pod: Obj): void {
    const k = this.key('pods', pod.metadata.namespace, pod.metadata.name);
    const proc = this.processes.get(k);
    if (proc && proc.uid === pod.metadata.uid) {
      this.endProcess(proc);
      this.processes.delete(k);
    }
    if (this.objects.get(k)?.metadata.uid === pod.metadata.uid) this.write('pods', this.objects.get(k)!, 'DELETED');
  }

  private bind(res: ServerResponse, namespace: string, name: string, body: any): void {
    const pod = this.mustGet('pods', namespace, name);
    if (body?.kind !== 'Binding' || body?.target?.kind !== 'Node' || !body?.target?.name) throw badRequest('the body must be a Binding with target {kind: Node, name}');
    this.validateBody(body);
    // The real server binds the Pod the Binding names (metadata.name; uid, when given, must match).
    if (body.metadata?.name !== name) throw badRequest(`the name of the Binding (${body.metadata?.name}) does not match the Pod on the URL (${name})`);
    if (body.metadata?.uid !== undefined && body.metadata.uid !== pod.metadata.uid) throw conflict('pods/binding', name, `Precondition failed: UID in precondition: ${body.metadata.uid}, UID in object meta: ${pod.metadata.uid}`);
    if ((pod.spec.schedulingGates ?? []).length > 0) throw conflict('pods/binding', name, 'pod has scheduling gates; remove them before binding');
    if (pod.spec.nodeName) throw conflict('pods/binding', name, `pod ${name} is already assigned to node "${pod.spec.nodeName}"`);
    const bound = this.updatePodStatus(pod, (p) => {
      p.spec.nodeName = body.target.name;
      p.status.conditions = [{ type: 'PodScheduled', status: 'True' }];
    })!;
    this.send(res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
    this.schedulePodStep(bound);
  }

  private podLog(res: ServerResponse, url: URL, namespace: string, name: string): void {
    const pod = this.mustGet('pods', namespace, name);
    const q = url.searchParams;
    const container = q.get('container') ?? pod.spec.containers[0].name;
    if (!pod.spec.containers.some((c: { name: string }) => c.name === container)) throw badRequest(`container ${container} is not valid for pod ${name}`);
    const state = pod.status.containerStatuses?.[0]?.state;
    if (!state || state.waiting) {
      const why = state?.waiting?.reason === 'ErrImagePull' || state?.waiting?.reason === 'ImagePullBackOff' ? 'trying and failing to pull image' : state?.waiting?.reason ?? 'ContainerCreating';
      throw badRequest(`container "${container}" in pod "${name}" is waiting to start: ${why}`);
    }
    const stream = q.get('stream') ?? 'All';
    if (!['All', 'Stdout', 'Stderr'].includes(stream)) throw invalid('PodLogOptions', name, `stream: Unsupported value: "${stream}"`);
    const tail = q.get('tailLines');
    if (tail !== null && stream !== 'All') throw invalid('PodLogOptions', name, 'tailLines: Forbidden: tailLines and specific stream are mutually exclusive for now');
    const follow = q.get('follow') === 'true';
    const timestamps = q.get('timestamps') === 'true';
    let sinceMs = -Infinity;
    if (q.get('sinceTime')) {
      const parsed = Date.parse(q.get('sinceTime')!);
      if (Number.isNaN(parsed)) throw badRequest(`sinceTime: "${q.get('sinceTime')}" is not RFC 3339`);
      // metav1.Time carries whole seconds.
      sinceMs = Math.floor(parsed / 1000) * 1000;
    } else if (q.get('sinceSeconds')) {
      sinceMs = Date.now() - Number(q.get('sinceSeconds')) * 1000;
    }
    const wanted = (e: LogEntry): boolean => (stream === 'All' || (stream === 'Stdout') === (e.stream === 'stdout')) && e.timeMs >= sinceMs;
    const format = (e: LogEntry): string => `${timestamps ? `${nanoTime(e.timeMs)} ` : ''}${e.text}\n`;

    const proc = this.processes.get(this.key('pods', namespace, name));
    const mine = proc && proc.uid === pod.metadata.uid ? proc : undefined;
    let lines = (mine?.logs ?? []).filter(wanted);
    if (tail !== null) lines = Number(tail) <= 0 ? [] : lines.slice(-Number(tail));
    res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    for (const e of lines) res.write(format(e));
    if (!follow || !mine || mine.ended) {
      res.end();
      return;
    }
    const follower = (e: LogEntry | 'end'): void => {
      if (e === 'end') res.end();
      else if (wanted(e)) res.write(format(e));
    };
    mine.followers.add(follower);
    res.on('close', () => mine.followers.delete(follower));
  }
}
