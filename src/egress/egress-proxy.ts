import { createServer, request as httpRequest, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock } from '../domain/clock.js';
import { ConflictError, InputError, NotFoundError } from '../domain/errors.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import { parseAbsoluteHttpUrl } from './absolute-url.js';
import { compileAllowlist, Allowlist, type AllowRule } from './allowlist.js';
import { formatTarget, parseAuthority, type EgressTarget } from './authority.js';
import type { AddressClass } from './address-policy.js';
import { parseCidr, type Cidr } from './cidr.js';
import type { AuditSink, EgressAuditRecord, EgressReason } from './egress-audit.js';
import { checkResolved, checkTarget, denialMessage, type EgressDenial } from './egress-decision.js';
import { forwardHeaders } from './forward-headers.js';
import { systemResolver, type HostResolver } from './host-resolver.js';
import { loadHostsFile, type HostsTable } from './hosts-file.js';
import { canonicalIp, formatIp, parseIp, unmapIp, type IpAddress } from './ip-address.js';
import { readClientHello } from './read-client-hello.js';
import { abortable } from './abortable.js';
import { parseProxyAuthorization, PROXY_AUTHENTICATE, type ProxyCredentials } from './proxy-authorization.js';
import { connectUpstream, UpstreamConnectError } from './upstream-connect.js';
import { linkSignals } from '../domain/linked-signal.js';
import type { DeniedAddressSource } from './platform-addresses.js';

/** Who an agent is and where it may connect; registered per source IP. */
export interface EgressPolicy {
  readonly agentId: string;
  readonly tenantId: string;
  readonly allowlist: Allowlist;
}

/** An EgressPolicy whose allowlist may still be rule strings (compiled by register/update). */
export interface EgressPolicyInput {
  readonly agentId: string;
  readonly tenantId: string;
  readonly allowlist: Allowlist | readonly string[];
}

/**
 * What a credential listener learns from an agent's `Proxy-Authorization: Basic` credentials.
 * - `ok`: the credentials name a live agent; connect under its policy.
 * - `bad-credentials`: unknown user or wrong token (answered 407). `detail` must not echo the token.
 * - `not-eligible`: valid credentials of an agent that may not use this listener now (not
 *   running, or not in allowlist mode there); answered 403 and audited under the agent.
 * - `unavailable`: the credentials could not be checked now (the authenticator's bound on
 *   store reads is reached); answered 503 `auth-unavailable` and audited. `detail` says to retry.
 */
export type ProxyAuthResult =
  | { readonly ok: true; readonly policy: EgressPolicy }
  | { readonly ok: false; readonly reason: 'bad-credentials'; readonly detail: string }
  | { readonly ok: false; readonly reason: 'unavailable'; readonly detail: string }
  | { readonly ok: false; readonly reason: 'not-eligible'; readonly agentId: string; readonly tenantId: string; readonly detail: string };

/**
 * Identifies agents by credentials instead of by source address (agents on Kubernetes, whose
 * Pod IPs the platform does not assign). Called once per client connection: per CONNECT
 * tunnel, and once for the plain-HTTP requests of a keep-alive connection (again when a
 * later request sends other credentials, or comes once `credentialRecheckMs` has passed
 * since the last check), so a policy change applies to the next connection, and to a busy
 * keep-alive connection within `credentialRecheckMs`. A thrown error, or no answer within
 * `authTimeoutMs`, is answered 503.
 */
export interface ProxyAuthenticator {
  /** @param signal aborts when the client leaves or `authTimeoutMs` passes; stop reading then. */
  authenticate(credentials: ProxyCredentials, signal: AbortSignal): Promise<ProxyAuthResult>;
}

/** Options for EgressProxy. Only `auditSink` is required. */
export interface EgressProxyOptions {
  /** Receives one record per connection attempt. */
  auditSink: AuditSink;
  /** Resolves host names allowed by a rule. @default systemResolver (getaddrinfo) */
  resolver?: HostResolver;
  /**
   * Path to a file in /etc/hosts format consulted before `resolver`. Read by the first
   * listen() and by reloadHostsFile(). Its answers are vetted like DNS answers unless
   * `trustHostsFile` is set.
   */
  hostsFile?: string;
  /**
   * FOR TESTS ONLY. When true, addresses that come from `hostsFile` skip the special-purpose
   * address check, so a test can map `allowed.test` to 127.0.0.1 and use host-name rules.
   * `deniedRanges` still apply. Never set this in production: anyone who can write the file
   * can then point an allowed name at the metadata service. @default false
   */
  trustHostsFile?: boolean;
  /**
   * Addresses and CIDR blocks no agent may reach, whatever its rules say: the platform's own
   * addresses (API server, database, the Docker host). Unlike private ranges, an address rule
   * does not unlock these. @default []
   */
  deniedRanges?: readonly string[];
  /**
   * More such addresses, read on every check because they change (the re-resolved addresses
   * of the platform's database, Redis and Kubernetes API; see PlatformAddresses). @default none
   */
  platformAddresses?: DeniedAddressSource;
  /**
   * Special-purpose address classes that no rule unlocks, not even an address rule naming
   * them (e.g. PLATFORM_LOCAL_CLASSES: loopback, link-local, ...). Addresses from a trusted
   * hosts file (tests only) skip this check like the other special-purpose checks. @default []
   */
  lockedAddressClasses?: readonly AddressClass[];
  /**
   * CONNECT ports on which the proxy reads the TLS ClientHello before forwarding and requires
   * its SNI, when present, to equal the CONNECT host. `'all'` checks every port. @default [443]
   */
  tlsCheckedPorts?: readonly number[] | 'all';
  /** Time to connect to the destination, over all its addresses. @default 10_000 */
  connectTimeoutMs?: number;
  /** Time for one name resolution. @default 5_000 */
  dnsTimeoutMs?: number;
  /** A tunnel or request with no bytes either way for this long is closed. @default 300_000 */
  idleTimeoutMs?: number;
  /** Time for a client to send the request headers. @default 10_000 */
  headersTimeoutMs?: number;
  /** Time for the ClientHello on a TLS-checked port, after the 200. @default 10_000 */
  clientHelloTimeoutMs?: number;
  /** Largest request head (request line and headers); larger gets 431. @default 16_384 */
  maxHeaderBytes?: number;
  /** Open tunnels plus in-flight requests allowed per source IP; more gets 429. @default 256 */
  maxConnectionsPerSource?: number;
  /**
   * On a credential listener, time for the authenticator's answer (a store read); later is
   * answered 503 `auth-unavailable`. Bounds what a stalled store costs each waiting client. @default 5_000
   */
  authTimeoutMs?: number;
  /**
   * On a credential listener, credential checks in progress allowed per source IP; more get
   * 429 `too-many-connections` before any store read. Clients that are not yet identified
   * can only be counted by address, and each check may cost a store read. @default 16
   */
  maxAuthenticationsPerSource?: number;
  /**
   * On a credential listener, how long a keep-alive connection's identity and policy serve
   * its later plain-HTTP requests; the first request after that checks the credentials again
   * (a store read), so a narrowed allowlist, a stop or a delete reaches a connection the
   * client keeps busy. Shorter applies changes sooner and costs one check per connection per
   * period. Open CONNECT tunnels are not affected. @default 5_000
   */
  credentialRecheckMs?: number;
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
}

/** An address the proxy listens on. */
export interface EgressListenAddress {
  readonly host: string;
  readonly port: number;
}

interface Listener {
  readonly server: Server;
  readonly address: EgressListenAddress;
  readonly sockets: Set<Socket>;
}

/** One tunnel or in-flight plain-HTTP request, tracked to enforce limits and to close it. */
interface Session {
  /** The source IP (registered agents), or `agent:<id>` on a credential listener. */
  readonly key: string;
  /** Closes the connection; `detail` ends up in the audit record. */
  close(detail: string): void;
}

type AuditBase = Pick<EgressAuditRecord, 'time' | 'agentId' | 'tenantId' | 'sourceIp' | 'method'>;

/** Who is connecting, as far as the proxy knows before it looks at the destination. */
interface Identified {
  readonly base: AuditBase;
  readonly policy: EgressPolicy | undefined;
  /** Key of the connection limit and of closeSessions (see Session.key). */
  readonly key: string;
  /** Set when a credential listener refused the credentials or the agent. */
  readonly refusal?: { readonly reason: 'proxy-auth-required' | 'unknown-source' | 'auth-unavailable' | 'too-many-connections'; readonly why: string };
}

/** The identity a credential listener established for a client connection (see ProxyAuthenticator). */
interface ConnectionIdentity {
  /** The Proxy-Authorization value it was established with; another value is checked anew. */
  readonly authorization: string;
  readonly policy: EgressPolicy;
  /** When the authenticator answered (clock ms); after `credentialRecheckMs` it is asked again. */
  readonly checkedAtMs: number;
}

interface Vetted {
  readonly rule: AllowRule;
  readonly addresses: readonly IpAddress[];
}

const HTTP_STATUS_FOR: Partial<Record<EgressReason, number>> = {
  'unknown-source': 403,
  'proxy-auth-required': 407,
  'auth-unavailable': 503,
  'not-in-allowlist': 403,
  'private-address': 403,
  'denied-range': 403,
  'host-mismatch': 403,
  'invalid-host': 400,
  'malformed-request': 400,
  'unsupported-request': 400,
  'dns-failure': 502,
  'upstream-error': 502,
  'connect-timeout': 504,
  'too-many-connections': 429,
  'proxy-closing': 503,
};

function rawResponse(status: number, body: string): string {
  const text = `${body}\n`;
  const challenge = status === 407 ? `Proxy-Authenticate: ${PROXY_AUTHENTICATE}\r\n` : '';
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `${challenge}Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`
  );
}

/** Every Proxy-Authorization value as sent: Node keeps only the first of duplicates in `headers`. */
function proxyAuthorizationOf(req: IncomingMessage): string | string[] | undefined {
  const values = req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]?.toLowerCase() === 'proxy-authorization');
  return values.length === 0 ? undefined : values.length === 1 ? values[0] : values;
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v <= 0) throw new InputError(`egress proxy option ${name} must be a positive integer, got ${String(value)}`);
  return v;
}

/**
 * The audited egress proxy: one per platform, listening on one or more addresses (each
 * agent network's gateway). It identifies an agent by the source IP of its connection, lets
 * it reach only what its allowlist allows, resolves names itself and connects to the vetted
 * address, and reports every attempt to the AuditSink.
 *
 * Agents use it as a standard HTTP proxy (HTTP_PROXY / HTTPS_PROXY = http://gateway:port):
 * - `CONNECT host:port` opens a TCP tunnel (HTTPS and any other TCP protocol);
 * - `GET http://host/path` (absolute form) is forwarded as plain HTTP, Host header checked.
 * Refusals get a short text body: `egress to evil.com:443 denied: not in allowlist`.
 *
 * Data moves with stream piping; the only per-connection accounting is reading the
 * upstream socket's byte counters when it closes.
 *
 * A listener started with `authenticate` (listen option) identifies agents by their
 * `Proxy-Authorization: Basic <agentId>:<token>` credentials instead (Kubernetes agents:
 * `HTTP_PROXY=http://<agentId>:<token>@proxy:port`); missing or wrong credentials get 407
 * with a `Proxy-Authenticate` challenge, and the source-IP registry is not consulted there.
 */
export class EgressProxy {
  private readonly sink: AuditSink;
  private readonly resolver: HostResolver;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly deniedRanges: readonly Cidr[];
  private readonly tlsCheckedPorts: ReadonlySet<number> | 'all';
  private readonly connectTimeoutMs: number;
  private readonly dnsTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly headersTimeoutMs: number;
  private readonly clientHelloTimeoutMs: number;
  private readonly maxHeaderBytes: number;
  private readonly maxConnectionsPerSource: number;
  private readonly authTimeoutMs: number;
  private readonly maxAuthenticationsPerSource: number;
  private readonly credentialRecheckMs: number;
  private readonly lockedClasses: ReadonlySet<AddressClass>;
  /** Credential checks in progress per source IP. */
  private readonly authenticating = new Map<string, number>();
  /** Identities of keep-alive client connections on credential listeners; gone with the socket. */
  private readonly identities = new WeakMap<Socket, ConnectionIdentity>();
  private readonly policies = new Map<string, EgressPolicy>();
  private readonly sessions = new Map<string, Set<Session>>();
  private readonly listeners = new Map<string, Listener>();
  private hostsTable: HostsTable = new Map();
  private hostsLoaded = false;
  private closing = false;

  constructor(private readonly options: EgressProxyOptions) {
    this.sink = options.auditSink;
    this.resolver = options.resolver ?? systemResolver;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.deniedRanges = (options.deniedRanges ?? []).map((text) => parseCidr(text));
    const ports = options.tlsCheckedPorts ?? [443];
    this.tlsCheckedPorts = ports === 'all' ? 'all' : new Set(ports);
    this.connectTimeoutMs = positiveInt('connectTimeoutMs', options.connectTimeoutMs, 10_000);
    this.dnsTimeoutMs = positiveInt('dnsTimeoutMs', options.dnsTimeoutMs, 5_000);
    this.idleTimeoutMs = positiveInt('idleTimeoutMs', options.idleTimeoutMs, 300_000);
    this.headersTimeoutMs = positiveInt('headersTimeoutMs', options.headersTimeoutMs, 10_000);
    this.clientHelloTimeoutMs = positiveInt('clientHelloTimeoutMs', options.clientHelloTimeoutMs, 10_000);
    this.maxHeaderBytes = positiveInt('maxHeaderBytes', options.maxHeaderBytes, 16_384);
    this.maxConnectionsPerSource = positiveInt('maxConnectionsPerSource', options.maxConnectionsPerSource, 256);
    this.authTimeoutMs = positiveInt('authTimeoutMs', options.authTimeoutMs, 5_000);
    this.maxAuthenticationsPerSource = positiveInt('maxAuthenticationsPerSource', options.maxAuthenticationsPerSource, 16);
    this.credentialRecheckMs = positiveInt('credentialRecheckMs', options.credentialRecheckMs, 5_000);
    this.lockedClasses = new Set(options.lockedAddressClasses ?? []);
  }

  // ---- registry -------------------------------------------------------------------------

  private static key(ip: string): string {
    const key = canonicalIp(ip);
    if (key === undefined) throw new InputError(`"${ip}" is not an IP address`, { ip }, 'INVALID_SOURCE_IP');
    return key;
  }

  private static compile(policy: EgressPolicyInput): EgressPolicy {
    const allowlist = policy.allowlist instanceof Allowlist ? policy.allowlist : compileAllowlist(policy.allowlist);
    return { agentId: policy.agentId, tenantId: policy.tenantId, allowlist };
  }

  /**
   * Registers the agent that connects from `ip`.
   * @throws InputError when `ip` or a rule is invalid (code INVALID_SOURCE_IP / INVALID_EGRESS_RULE).
   * @throws ConflictError (EGRESS_SOURCE_TAKEN) when `ip` is registered already; call
   *   unregister first, so one agent never inherits another's policy by accident.
   */
  register(ip: string, policy: EgressPolicyInput): void {
    const key = EgressProxy.key(ip);
    const compiled = EgressProxy.compile(policy);
    const existing = this.policies.get(key);
    if (existing !== undefined) {
      throw new ConflictError('EGRESS_SOURCE_TAKEN', `source ${key} is already registered for agent ${existing.agentId}`, { ip: key, agentId: existing.agentId });
    }
    this.policies.set(key, compiled);
  }

  /**
   * Replaces the policy for `ip`. It applies to new tunnels and to each new plain-HTTP
   * request; open tunnels keep the policy they were opened with unless `closeExisting`.
   * @throws NotFoundError (EGRESS_SOURCE_NOT_FOUND) when `ip` is not registered.
   */
  update(ip: string, policy: EgressPolicyInput, options: { closeExisting?: boolean } = {}): void {
    const key = EgressProxy.key(ip);
    const compiled = EgressProxy.compile(policy);
    if (!this.policies.has(key)) throw new NotFoundError('EGRESS_SOURCE_NOT_FOUND', `source ${key} is not registered`, { ip: key });
    this.policies.set(key, compiled);
    if (options.closeExisting === true) this.closeSessions(key, 'policy-updated');
  }

  /**
   * Forgets `ip` and closes its open tunnels and requests: the address may soon belong to
   * another agent. Returns how many connections were closed; unknown addresses are a no-op.
   */
  unregister(ip: string): number {
    const key = EgressProxy.key(ip);
    this.policies.delete(key);
    return this.closeSessions(key, 'unregistered');
  }

  /** The policy registered for `ip`, if any. */
  policyOf(ip: string): EgressPolicy | undefined {
    const key = canonicalIp(ip);
    return key === undefined ? undefined : this.policies.get(key);
  }

  /** Open tunnels plus in-flight plain-HTTP requests, for one source or in total. */
  openConnections(ip?: string): number {
    if (ip !== undefined) return this.sessions.get(canonicalIp(ip) ?? ip)?.size ?? 0;
    let total = 0;
    for (const set of this.sessions.values()) total += set.size;
    return total;
  }

  private closeSessions(key: string, detail: string): number {
    const set = this.sessions.get(key);
    if (set === undefined) return 0;
    const all = [...set];
    for (const session of all) session.close(detail);
    return all.length;
  }

  private openSession(session: Session): () => void {
    let set = this.sessions.get(session.key);
    if (set === undefined) {
      set = new Set();
      this.sessions.set(session.key, set);
    }
    set.add(session);
    return () => {
      set.delete(session);
      if (set.size === 0 && this.sessions.get(session.key) === set) this.sessions.delete(session.key);
    };
  }

  // ---- listening ------------------------------------------------------------------------

  /**
   * Starts listening on `host:port` (port 0 picks a free port). Call once per address, e.g.
   * once per agent network gateway; all listeners share the registry and the audit sink.
   * Reads `hostsFile` the first time. With `authenticate`, the listener identifies agents by
   * their proxy credentials (see ProxyAuthenticator) rather than by source IP.
   * @throws the listen error (EADDRINUSE, EADDRNOTAVAIL, ...) or the signal's reason.
   */
  async listen(options: { host: string; port: number; signal?: AbortSignal; authenticate?: ProxyAuthenticator }): Promise<EgressListenAddress> {
    if (this.closing) throw new Error('egress proxy is closed');
    options.signal?.throwIfAborted();
    if (!this.hostsLoaded && this.options.hostsFile !== undefined) await this.reloadHostsFile(options.signal);
    const server = createServer({ maxHeaderSize: this.maxHeaderBytes, requestTimeout: 0, headersTimeout: this.headersTimeoutMs, connectionsCheckingInterval: Math.min(1_000, this.headersTimeoutMs) });
    server.setTimeout(this.idleTimeoutMs);
    const sockets = new Set<Socket>();
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    const auth = options.authenticate;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, auth));
    server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onConnect(req, socket as Socket, head, auth));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => this.onUpgrade(req, socket as Socket));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket as Socket));
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        server.close();
        reject(options.signal?.reason);
      };
      server.once('error', (err) => {
        options.signal?.removeEventListener('abort', onAbort);
        reject(err);
      });
      options.signal?.addEventListener('abort', onAbort, { once: true });
      server.listen({ host: options.host, port: options.port, exclusive: true }, () => {
        options.signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    server.on('error', (err) => this.logger.error({ err }, 'egress proxy listener error'));
    const bound = server.address();
    if (bound === null || typeof bound === 'string') throw new Error('egress proxy: unexpected listen address');
    const address = { host: canonicalIp(bound.address) ?? bound.address, port: bound.port };
    this.listeners.set(formatTarget(address), { server, address, sockets });
    return address;
  }

  /** Addresses currently listened on. */
  addresses(): EgressListenAddress[] {
    return [...this.listeners.values()].map((l) => l.address);
  }

  /**
   * Stops listening on one address (e.g. its agent network was removed) and closes the
   * connections that came in through it. Unknown addresses are a no-op.
   */
  async unlisten(address: EgressListenAddress, signal?: AbortSignal): Promise<void> {
    const key = formatTarget({ host: canonicalIp(address.host) ?? address.host, port: address.port });
    const listener = this.listeners.get(key);
    if (listener === undefined) return;
    this.listeners.delete(key);
    await this.stopListener(listener, signal);
  }

  private async stopListener(listener: Listener, signal?: AbortSignal): Promise<void> {
    const closed = new Promise<void>((resolve) => listener.server.close(() => resolve()));
    // Tunnels are detached from the HTTP server, so closeAllConnections() alone misses them.
    for (const socket of listener.sockets) socket.destroy();
    listener.server.closeAllConnections();
    await abortable(closed, signal);
  }

  /** Re-reads `hostsFile` (no-op without one). @throws the fs error when it cannot be read. */
  async reloadHostsFile(signal?: AbortSignal): Promise<void> {
    if (this.options.hostsFile === undefined) return;
    this.hostsTable = await loadHostsFile(this.options.hostsFile, signal);
    this.hostsLoaded = true;
  }

  /**
   * Stops all listeners and closes every tunnel and request. Idempotent. New connections are
   * refused from the moment it is called.
   */
  async close(signal?: AbortSignal): Promise<void> {
    this.closing = true;
    for (const key of [...this.sessions.keys()]) this.closeSessions(key, 'proxy-closed');
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(listeners.map((l) => this.stopListener(l, signal)));
  }

  // ---- shared helpers -------------------------------------------------------------------

  private emit(entry: EgressAuditRecord): void {
    try {
      const result = this.sink.record(entry);
      if (result !== undefined) result.catch((err: unknown) => this.logger.error({ err }, 'egress audit sink failed'));
    } catch (err) {
      this.logger.error({ err }, 'egress audit sink failed');
    }
  }

  private base(socket: Socket, method: 'CONNECT' | 'HTTP'): Identified {
    const sourceIp = canonicalIp(socket.remoteAddress ?? '') ?? 'unknown';
    const policy = this.policies.get(sourceIp);
    return {
      policy,
      key: sourceIp,
      base: { time: this.clock.now(), agentId: policy?.agentId ?? null, tenantId: policy?.tenantId ?? null, sourceIp, method },
    };
  }

  /**
   * Identity on a credential listener: the agent its Proxy-Authorization names, when the
   * authenticator accepts it. Never throws; the token appears in no refusal or record.
   */
  private async identify(req: IncomingMessage, socket: Socket, method: 'CONNECT' | 'HTTP', auth: ProxyAuthenticator): Promise<Identified> {
    const sourceIp = canonicalIp(socket.remoteAddress ?? '') ?? 'unknown';
    const anonymous: AuditBase = { time: this.clock.now(), agentId: null, tenantId: null, sourceIp, method };
    const refuse = (refusal: NonNullable<Identified['refusal']>, base = anonymous): Identified => ({ base, policy: undefined, key: sourceIp, refusal });
    const header = proxyAuthorizationOf(req);
    const parsed = { ...parseProxyAuthorization(header), authorization: header };
    if (parsed.kind === 'missing') {
      return refuse({ reason: 'proxy-auth-required', why: 'proxy credentials required: use the HTTP_PROXY the platform set (http://<agent id>:<token>@host:port)' });
    }
    if (parsed.kind === 'malformed') return refuse({ reason: 'proxy-auth-required', why: `bad proxy credentials: ${parsed.detail}` });
    const inFlight = this.authenticating.get(sourceIp) ?? 0;
    if (inFlight >= this.maxAuthenticationsPerSource) {
      return refuse({ reason: 'too-many-connections', why: `${inFlight} proxy credential checks from ${sourceIp} are in progress already; retry` });
    }
    this.authenticating.set(sourceIp, inFlight + 1);
    const gone = new AbortController();
    const onClose = (): void => gone.abort();
    socket.once('close', onClose);
    const timeout = AbortSignal.timeout(this.authTimeoutMs);
    const linked = linkSignals(gone.signal, timeout);
    let result: ProxyAuthResult;
    try {
      // Raced against the signal: an authenticator that ignores it still frees the client.
      result = await abortable(auth.authenticate(parsed.credentials, linked.signal), linked.signal);
    } catch (err) {
      if (timeout.aborted) {
        this.logger.warn({ sourceIp, timeoutMs: this.authTimeoutMs }, 'egress proxy: checking proxy credentials timed out');
        return refuse({ reason: 'auth-unavailable', why: `proxy credentials could not be checked within ${this.authTimeoutMs} ms; retry` });
      }
      if (!gone.signal.aborted) this.logger.error({ err }, 'egress proxy: checking proxy credentials failed');
      return refuse({ reason: 'auth-unavailable', why: 'proxy credentials could not be checked right now; retry' });
    } finally {
      linked.dispose();
      socket.removeListener('close', onClose);
      const left = (this.authenticating.get(sourceIp) ?? 1) - 1;
      if (left > 0) this.authenticating.set(sourceIp, left);
      else this.authenticating.delete(sourceIp);
    }
    if (result.ok) {
      const { policy } = result;
      // Plain HTTP keeps this for the connection's later requests, up to credentialRecheckMs
      // (the contract: policy per connection, and a busy connection does not keep it forever).
      if (method === 'HTTP' && typeof parsed.authorization === 'string') this.identities.set(socket, { authorization: parsed.authorization, policy, checkedAtMs: this.clock.now() });
      return this.asAgent(policy, anonymous);
    }
    if (result.reason === 'bad-credentials') return refuse({ reason: 'proxy-auth-required', why: result.detail });
    if (result.reason === 'unavailable') return refuse({ reason: 'auth-unavailable', why: result.detail });
    return refuse({ reason: 'unknown-source', why: result.detail }, { ...anonymous, agentId: result.agentId, tenantId: result.tenantId });
  }

  private asAgent(policy: EgressPolicy, anonymous: AuditBase): Identified {
    return { policy, key: `agent:${policy.agentId}`, base: { ...anonymous, agentId: policy.agentId, tenantId: policy.tenantId } };
  }

  /**
   * The identity an earlier request of this keep-alive connection established with the same
   * credentials, while younger than credentialRecheckMs.
   */
  private knownIdentity(req: IncomingMessage, socket: Socket): Identified | undefined {
    const known = this.identities.get(socket);
    if (known === undefined) return undefined;
    if (proxyAuthorizationOf(req) !== known.authorization || this.clock.now() - known.checkedAtMs >= this.credentialRecheckMs) {
      this.identities.delete(socket);
      return undefined;
    }
    const sourceIp = canonicalIp(socket.remoteAddress ?? '') ?? 'unknown';
    return this.asAgent(known.policy, { time: this.clock.now(), agentId: null, tenantId: null, sourceIp, method: 'HTTP' });
  }

  private elapsed(base: AuditBase): number {
    return Math.max(0, this.clock.now() - base.time);
  }

  /** Checks done before any I/O; returns a denial or undefined. */
  private precheck(who: Identified, target: { host: string; port: number | null }): EgressDenial | undefined {
    const { base, policy } = who;
    if (this.closing) return { ok: false, reason: 'proxy-closing', message: denialMessage(target, 'proxy is shutting down') };
    if (who.refusal !== undefined) return { ok: false, reason: who.refusal.reason, message: denialMessage(target, who.refusal.why) };
    if (policy === undefined) {
      return { ok: false, reason: 'unknown-source', message: denialMessage(target, `source ${base.sourceIp} is not a registered agent`) };
    }
    if ((this.sessions.get(who.key)?.size ?? 0) >= this.maxConnectionsPerSource) {
      return { ok: false, reason: 'too-many-connections', message: denialMessage(target, `agent has ${this.maxConnectionsPerSource} open connections already`) };
    }
    return undefined;
  }

  /** Policy, then DNS (hosts file first), then the vetting of the addresses. */
  private async vet(policy: EgressPolicy, target: EgressTarget, signal: AbortSignal): Promise<Vetted | EgressDenial> {
    const platform = this.options.platformAddresses?.current();
    const denied = platform === undefined || platform.length === 0 ? this.deniedRanges : [...this.deniedRanges, ...platform];
    const first = checkTarget(policy.allowlist, target, denied, this.lockedClasses);
    if (!first.ok) return first;
    if (target.ip !== undefined) return { rule: first.rule, addresses: [target.ip] };
    const fromHosts = this.hostsTable.get(target.host);
    let addresses: readonly IpAddress[];
    let trusted = false;
    if (fromHosts !== undefined) {
      addresses = fromHosts;
      trusted = this.options.trustHostsFile === true;
    } else {
      try {
        const dns = linkSignals(signal, AbortSignal.timeout(this.dnsTimeoutMs));
        let answers: readonly string[];
        try {
          answers = await abortable(this.resolver.resolve(target.host, dns.signal), dns.signal);
        } finally {
          dns.dispose();
        }
        addresses = answers.map((text) => parseIp(text)).filter((ip): ip is IpAddress => ip !== undefined).map(unmapIp);
      } catch (err) {
        const why = signal.aborted ? 'connection closed' : err instanceof Error ? err.message : String(err);
        return { ok: false, reason: 'dns-failure', message: denialMessage(target, `name did not resolve (${why})`), rule: first.rule.text };
      }
    }
    const second = checkResolved(policy.allowlist, target, addresses, { trusted, deniedRanges: denied, lockedClasses: this.lockedClasses });
    if (!second.ok) return { ...second, rule: first.rule.text };
    return { rule: first.rule, addresses };
  }

  private async connect(target: EgressTarget, vetted: Vetted, signal: AbortSignal): Promise<Socket | EgressDenial> {
    try {
      return await connectUpstream(vetted.addresses, target.port, { timeoutMs: this.connectTimeoutMs, signal });
    } catch (err) {
      const timedOut = err instanceof UpstreamConnectError && err.timedOut;
      const why = err instanceof Error ? err.message : String(err);
      return {
        ok: false,
        reason: timedOut ? 'connect-timeout' : 'upstream-error',
        message: `egress to ${formatTarget(target)} failed: ${why}`,
        resolvedIp: vetted.addresses.length === 1 && vetted.addresses[0] !== undefined ? formatIp(vetted.addresses[0]) : undefined,
        rule: vetted.rule.text,
      };
    }
  }

  /** Records an allowed attempt that ended (client gone, proxy closing) before any byte moved. */
  private abandoned(base: AuditBase, target: EgressTarget, rule: string | undefined, detail: string | undefined): void {
    this.emit({
      ...base,
      host: target.host,
      port: target.port,
      rule,
      decision: 'allow',
      reason: 'allowed',
      detail: detail ?? 'client closed before the connection was established',
      bytesUp: 0,
      bytesDown: 0,
      durationMs: this.elapsed(base),
    });
  }

  // ---- CONNECT --------------------------------------------------------------------------

  private onConnect(req: IncomingMessage, socket: Socket, head: Buffer, auth: ProxyAuthenticator | undefined): void {
    socket.on('error', (err) => this.logger.debug({ err }, 'egress client socket error'));
    if (auth === undefined) return this.connectAs(req, socket, head, this.base(socket, 'CONNECT'));
    void this.identify(req, socket, 'CONNECT', auth)
      .then((who) => this.connectAs(req, socket, head, who))
      .catch((err: unknown) => {
        this.logger.error({ err }, 'egress tunnel failed');
        socket.destroy();
      });
  }

  private connectAs(req: IncomingMessage, socket: Socket, head: Buffer, who: Identified): void {
    const { base, policy } = who;
    const parsed = parseAuthority(req.url ?? '');
    const target = 'target' in parsed ? parsed.target : undefined;
    const shown = target ?? { host: (req.url ?? '').slice(0, 300), port: null };
    const refuse = (denial: Omit<EgressDenial, 'ok'>, httpStatus = HTTP_STATUS_FOR[denial.reason] ?? 403): void => {
      if (socket.writable) socket.end(rawResponse(httpStatus, denial.message));
      else socket.destroy();
      this.emit({ ...base, host: shown.host, port: shown.port, resolvedIp: denial.resolvedIp, rule: denial.rule, decision: 'deny', reason: denial.reason, detail: denial.message, httpStatus, bytesUp: 0, bytesDown: 0, durationMs: this.elapsed(base) });
    };
    const early = this.precheck(who, shown);
    if (early !== undefined) return refuse(early);
    if (target === undefined || policy === undefined) {
      const why = 'error' in parsed ? parsed.error : 'bad target';
      return refuse({ reason: 'invalid-host', message: `bad CONNECT target "${shown.host}": ${why}` });
    }

    const abort = new AbortController();
    let upstream: Socket | undefined;
    let closeDetail: string | undefined;
    const release = this.openSession({
      key: who.key,
      close: (detail) => {
        closeDetail ??= detail;
        abort.abort();
        socket.destroy();
        upstream?.destroy();
      },
    });
    socket.once('close', () => abort.abort());
    // The client may have left while a credential listener checked its credentials.
    if (socket.destroyed) abort.abort();
    void this.runTunnel({ base, policy, target, socket, head, abort, refuse, setUpstream: (u) => (upstream = u), detail: () => closeDetail })
      .catch((err: unknown) => {
        this.logger.error({ err }, 'egress tunnel failed');
        socket.destroy();
        upstream?.destroy();
      })
      .finally(release);
  }

  private async runTunnel(ctx: {
    base: AuditBase;
    policy: EgressPolicy;
    target: EgressTarget;
    socket: Socket;
    head: Buffer;
    abort: AbortController;
    refuse: (denial: Omit<EgressDenial, 'ok'>) => void;
    setUpstream: (upstream: Socket) => void;
    detail: () => string | undefined;
  }): Promise<void> {
    const { base, target, socket, abort } = ctx;
    const vetted = await this.vet(ctx.policy, target, abort.signal);
    // A resolution cut short because the client left is not a DNS failure.
    if (abort.signal.aborted && (!('ok' in vetted) || vetted.reason === 'dns-failure')) {
      return this.abandoned(base, target, 'ok' in vetted ? vetted.rule : vetted.rule.text, ctx.detail());
    }
    if ('ok' in vetted) return ctx.refuse(vetted);
    const connected = await this.connect(target, vetted, abort.signal);
    if (abort.signal.aborted) {
      if (!('ok' in connected)) connected.destroy();
      return this.abandoned(base, target, vetted.rule.text, ctx.detail());
    }
    if ('ok' in connected) return ctx.refuse(connected);
    const upstream = connected;
    ctx.setUpstream(upstream);
    upstream.on('error', (err) => this.logger.debug({ err }, 'egress upstream socket error'));
    const resolvedIp = canonicalIp(upstream.remoteAddress ?? '') ?? upstream.remoteAddress;
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');

    let sni: string | undefined;
    let firstBytes = ctx.head;
    if (this.tlsCheckedPorts === 'all' || this.tlsCheckedPorts.has(target.port)) {
      const hello = await readClientHello(socket, ctx.head, this.clientHelloTimeoutMs);
      firstBytes = hello.buffer;
      let denial: { reason: EgressReason; detail: string } | undefined;
      if (hello.kind === 'timeout') denial = { reason: 'client-hello-timeout', detail: `no TLS ClientHello within ${this.clientHelloTimeoutMs} ms` };
      else if (hello.kind === 'closed') denial = abort.signal.aborted ? undefined : { reason: 'tls-malformed', detail: 'client closed before a complete ClientHello' };
      else if (hello.scan.kind === 'malformed') denial = { reason: 'tls-malformed', detail: `bad TLS ClientHello: ${hello.scan.detail}` };
      else if (hello.scan.kind === 'client-hello' && hello.scan.serverName !== undefined) {
        sni = hello.scan.serverName.toLowerCase().replace(/\.$/, '');
        if (sni !== target.host) denial = { reason: 'sni-mismatch', detail: `TLS server name "${sni}" does not match CONNECT host "${target.host}"` };
      }
      if (abort.signal.aborted || denial !== undefined) {
        socket.destroy();
        upstream.destroy();
        if (denial !== undefined) {
          const detail = denialMessage(target, denial.detail);
          this.emit({ ...base, host: target.host, port: target.port, resolvedIp, sni, rule: vetted.rule.text, decision: 'deny', reason: denial.reason, detail, bytesUp: 0, bytesDown: 0, durationMs: this.elapsed(base) });
        }
        return;
      }
    }

    await new Promise<void>((resolve) => {
      let open = 2;
      let idle = false;
      const closed = (): void => {
        open -= 1;
        if (open > 0) return;
        const detail = ctx.detail() ?? (idle ? 'idle-timeout' : undefined);
        this.emit({ ...base, host: target.host, port: target.port, resolvedIp, sni, rule: vetted.rule.text, decision: 'allow', reason: 'allowed', detail, httpStatus: 200, bytesUp: upstream.bytesWritten, bytesDown: upstream.bytesRead, durationMs: this.elapsed(base) });
        resolve();
      };
      socket.once('close', () => {
        // Nothing can reach a closed client; do not keep the destination waiting.
        upstream.destroy();
        closed();
      });
      upstream.once('close', (hadError) => {
        if (hadError) socket.destroy();
        else socket.end();
        closed();
      });
      socket.setTimeout(this.idleTimeoutMs, () => {
        idle = true;
        socket.destroy();
        upstream.destroy();
      });
      if (socket.destroyed) {
        upstream.destroy();
        return;
      }
      if (firstBytes.length > 0) upstream.write(firstBytes);
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
  }

  // ---- plain HTTP -----------------------------------------------------------------------

  private onRequest(req: IncomingMessage, res: ServerResponse, auth: ProxyAuthenticator | undefined): void {
    if (auth === undefined) return this.requestAs(req, res, this.base(req.socket, 'HTTP'));
    const known = this.knownIdentity(req, req.socket);
    if (known !== undefined) return this.requestAs(req, res, known);
    void this.identify(req, req.socket, 'HTTP', auth)
      .then((who) => this.requestAs(req, res, who))
      .catch((err: unknown) => {
        this.logger.error({ err }, 'egress request failed');
        res.destroy();
      });
  }

  private requestAs(req: IncomingMessage, res: ServerResponse, who: Identified): void {
    const { base, policy } = who;
    const parsed = parseAbsoluteHttpUrl(req.url ?? '');
    const target = 'target' in parsed ? parsed.target : undefined;
    const shown = target ?? { host: '', port: null };
    const refuse = (denial: Omit<EgressDenial, 'ok'>, extra: Partial<EgressAuditRecord> = {}): void => {
      const status = HTTP_STATUS_FOR[denial.reason] ?? 403;
      const body = `${denial.message}\n`;
      if (!res.headersSent) {
        res.writeHead(status, {
          'content-type': 'text/plain; charset=utf-8',
          'content-length': Buffer.byteLength(body),
          connection: 'close',
          ...(status === 407 ? { 'proxy-authenticate': PROXY_AUTHENTICATE } : {}),
        });
        res.end(body);
      } else res.destroy();
      this.emit({ ...base, host: shown.host, port: shown.port, resolvedIp: denial.resolvedIp, rule: denial.rule, decision: 'deny', reason: denial.reason, detail: denial.message, httpStatus: status, bytesUp: 0, bytesDown: 0, durationMs: this.elapsed(base), ...extra });
    };
    const early = this.precheck(who, shown);
    if (early !== undefined) return refuse(early);
    if (!('target' in parsed) || policy === undefined) {
      const error = 'error' in parsed ? parsed : { reason: 'malformed-request' as const, error: 'bad request target' };
      return refuse({ reason: error.reason, message: `bad proxy request: ${error.error}` });
    }
    const { target: tgt, path } = parsed;
    const hostHeaders = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]?.toLowerCase() === 'host').length;
    if (hostHeaders > 1) return refuse({ reason: 'malformed-request', message: 'bad proxy request: more than one Host header' });
    const hostHeader = req.headers.host;
    if (hostHeader !== undefined) {
      const fromHeader = parseAuthority(hostHeader, 80);
      if (!('target' in fromHeader) || fromHeader.target.host !== tgt.host || fromHeader.target.port !== tgt.port) {
        return refuse({ reason: 'host-mismatch', message: denialMessage(tgt, `Host header "${hostHeader.slice(0, 300)}" does not match the request URL`) });
      }
    }

    const abort = new AbortController();
    let upstream: Socket | undefined;
    let closeDetail: string | undefined;
    const release = this.openSession({
      key: who.key,
      close: (detail) => {
        closeDetail ??= detail;
        abort.abort();
        res.destroy();
        upstream?.destroy();
      },
    });
    res.once('close', () => abort.abort());
    // The client may have left while a credential listener checked its credentials.
    if (req.socket.destroyed) abort.abort();
    void this.forwardHttp({ base, policy, target: tgt, path, req, res, abort, refuse, setUpstream: (u) => (upstream = u), detail: () => closeDetail })
      .catch((err: unknown) => {
        this.logger.error({ err }, 'egress request failed');
        res.destroy();
        upstream?.destroy();
      })
      .finally(release);
  }

  private async forwardHttp(ctx: {
    base: AuditBase;
    policy: EgressPolicy;
    target: EgressTarget;
    path: string;
    req: IncomingMessage;
    res: ServerResponse;
    abort: AbortController;
    refuse: (denial: Omit<EgressDenial, 'ok'>, extra?: Partial<EgressAuditRecord>) => void;
    setUpstream: (upstream: Socket) => void;
    detail: () => string | undefined;
  }): Promise<void> {
    const { base, target, req, res, abort } = ctx;
    const vetted = await this.vet(ctx.policy, target, abort.signal);
    // A resolution cut short because the client left is not a DNS failure.
    if (abort.signal.aborted && (!('ok' in vetted) || vetted.reason === 'dns-failure')) {
      return this.abandoned(base, target, 'ok' in vetted ? vetted.rule : vetted.rule.text, ctx.detail());
    }
    if ('ok' in vetted) return ctx.refuse(vetted);
    const connected = await this.connect(target, vetted, abort.signal);
    if (abort.signal.aborted) {
      if (!('ok' in connected)) connected.destroy();
      return this.abandoned(base, target, vetted.rule.text, ctx.detail());
    }
    if ('ok' in connected) return ctx.refuse(connected);
    const upstream = connected;
    ctx.setUpstream(upstream);
    upstream.on('error', (err) => this.logger.debug({ err }, 'egress upstream socket error'));
    const resolvedIp = canonicalIp(upstream.remoteAddress ?? '') ?? upstream.remoteAddress;
    let idle = false;
    upstream.setTimeout(this.idleTimeoutMs, () => {
      idle = true;
      upstream.destroy(new Error(`no data for ${this.idleTimeoutMs} ms`));
    });

    const headers = forwardHeaders(req.rawHeaders);
    if (req.headers.host === undefined) headers.push('Host', formatTarget(target));
    headers.push('Connection', 'close');
    let upstreamReq: ReturnType<typeof httpRequest>;
    try {
      upstreamReq = httpRequest({ method: req.method, path: ctx.path, headers, setHost: false, createConnection: () => upstream });
    } catch (err) {
      upstream.destroy();
      return ctx.refuse({ reason: 'malformed-request', message: `bad proxy request: ${err instanceof Error ? err.message : String(err)}`, rule: vetted.rule.text });
    }
    await new Promise<void>((resolve) => {
      let upstreamFailure: string | undefined;
      res.once('close', () => {
        upstreamReq.destroy();
        upstream.destroy();
        const detail = ctx.detail() ?? (idle ? 'idle-timeout' : upstreamFailure);
        if (upstreamFailure !== undefined && res.statusCode === 502) {
          this.emit({ ...base, host: target.host, port: target.port, resolvedIp, rule: vetted.rule.text, decision: 'deny', reason: 'upstream-error', detail, httpStatus: 502, bytesUp: upstream.bytesWritten, bytesDown: upstream.bytesRead, durationMs: this.elapsed(base) });
        } else {
          this.emit({ ...base, host: target.host, port: target.port, resolvedIp, rule: vetted.rule.text, decision: 'allow', reason: 'allowed', detail, httpStatus: res.headersSent ? res.statusCode : undefined, bytesUp: upstream.bytesWritten, bytesDown: upstream.bytesRead, durationMs: this.elapsed(base) });
        }
        resolve();
      });
      upstreamReq.on('response', (upstreamRes: IncomingMessage) => {
        upstreamRes.on('error', () => res.destroy());
        try {
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, forwardHeaders(upstreamRes.rawHeaders, ['transfer-encoding']));
        } catch (err) {
          // Node refuses to send some heads it parsed leniently (odd status codes, bytes in the reason phrase).
          upstreamReq.destroy(new Error(`unforwardable response head: ${err instanceof Error ? err.message : String(err)}`));
          return;
        }
        upstreamRes.pipe(res);
      });
      upstreamReq.on('error', (err) => {
        upstreamFailure = `upstream error: ${err.message}`;
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const body = `egress to ${formatTarget(target)} failed: ${err.message}\n`;
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
        res.end(body);
      });
      req.on('error', () => upstreamReq.destroy());
      req.pipe(upstreamReq);
    });
  }

  // ---- other input ----------------------------------------------------------------------

  private onUpgrade(req: IncomingMessage, socket: Socket): void {
    socket.on('error', () => undefined);
    const { base } = this.base(socket, 'HTTP');
    const message = 'bad proxy request: Upgrade over plain HTTP is not forwarded; use CONNECT host:port for WebSockets';
    socket.end(rawResponse(400, message));
    const parsed = parseAbsoluteHttpUrl(req.url ?? '');
    const shown = 'target' in parsed ? parsed.target : { host: '', port: null };
    this.emit({ ...base, host: shown.host, port: shown.port, decision: 'deny', reason: 'unsupported-request', detail: message, httpStatus: 400, bytesUp: 0, bytesDown: 0, durationMs: 0 });
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    socket.on('error', () => undefined);
    // A reset or a half-written response is nothing to answer or to audit.
    if (err.code === 'ECONNRESET' || !socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const message = status === 431 ? `bad proxy request: request head larger than ${this.maxHeaderBytes} bytes` : status === 408 ? 'bad proxy request: headers not received in time' : `bad proxy request: ${err.code ?? 'unparseable'}`;
    socket.end(rawResponse(status, message));
    const { base } = this.base(socket, 'HTTP');
    this.emit({ ...base, host: '', port: null, decision: 'deny', reason: 'malformed-request', detail: message, httpStatus: status, bytesUp: 0, bytesDown: 0, durationMs: 0 });
  }
}
