import type { Agent } from '../domain/agent.js';
import { systemClock, type Clock } from '../domain/clock.js';
import { InputError } from '../domain/errors.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import { abortable } from '../egress/abortable.js';
import { PLATFORM_LOCAL_CLASSES } from '../egress/address-policy.js';
import { compileAllowlist, type Allowlist } from '../egress/allowlist.js';
import { EgressProxy, type EgressListenAddress, type EgressProxyOptions, type ProxyAuthenticator, type ProxyAuthResult } from '../egress/egress-proxy.js';
import type { ProxyCredentials } from '../egress/proxy-authorization.js';
import type { Store } from '../store/store.js';
import { hostAddresses } from './agent-network-manager.js';
import type { EgressCredentials } from './egress-credentials.js';
import { networkPolicyOf } from './network-policy.js';

/** Phases in which an agent's Pod may be running: Starting too, as the container can connect before the status says Running. */
const LIVE_PHASES: ReadonlySet<Agent['status']['phase']> = new Set(['Starting', 'Running']);
const AGENT_ID = /^[a-z0-9]{8,40}$/;
/** Compiled allowlists kept; beyond this the oldest entry goes (a miss only costs a compile). */
const MAX_CACHED_ALLOWLISTS = 10_000;
/** Unknown agent ids remembered; beyond this the oldest goes (a miss only costs a store read). */
const MAX_CACHED_UNKNOWN = 10_000;
/** Store reads for credential checks in flight at once, over all clients (see ClusterEgressAuthenticator). */
const DEFAULT_MAX_STORE_READS_IN_FLIGHT = 32;
/** Identity whose token an unknown id is compared with, so that answer costs what a wrong token costs. */
const NOBODY = { id: '-', tenantId: '-' } as const;

/**
 * Identifies Kubernetes agents at the proxy's cluster listener by their credentials
 * (src/security/egress-credentials.ts) and gives each connection the agent's allowlist as
 * the store holds it now: one read of the agent per client connection (a tunnel, or a
 * keep-alive connection's plain-HTTP requests, which the proxy checks again once the
 * connection is older than its `credentialRecheckMs`), so a PATCH of the allowlist, a stop
 * or a delete applies to the next connection on every replica. No answer is cached: checks of
 * the same agent that overlap share one read (single-flight), so a burst of connections from
 * one agent costs one read, and a connection that arrives while a read is in flight gets that
 * read's answer. Only a live agent (Starting or Running) on a Kubernetes node in allowlist
 * mode gets through; a Docker agent's token is refused here (it has its source-IP
 * registration instead).
 *
 * An id the store does not hold is remembered for `unknownAgentTtlMs`, so a client cycling
 * through made-up ids costs no store read per attempt. At most `maxStoreReadsInFlight` reads
 * run at once over all clients; a check that would start another is answered 503 at once
 * (`unavailable`). A read counts until the store answers, not until its client gives up:
 * the proxy's time limit frees the client, but the read goes on holding a database
 * connection, and it must not make room for yet another one. The EgressProxy bounds the
 * rest (checks in flight per source address, time per check).
 */
export class ClusterEgressAuthenticator implements ProxyAuthenticator {
  /** Compiled allowlists by agent id, valid for the record version they were compiled from. */
  private readonly compiled = new Map<string, { version: number; allowlist: Allowlist }>();
  /** Ids the store did not hold, with when that answer expires (ms since the epoch). */
  private readonly unknown = new Map<string, number>();
  /** Store reads in flight by agent id, shared by the checks that overlap them; gone once settled. */
  private readonly reads = new Map<string, Promise<Agent | undefined>>();
  private readonly clock: Clock;
  private readonly unknownAgentTtlMs: number;
  private readonly maxStoreReadsInFlight: number;

  constructor(
    private readonly d: {
      store: Pick<Store, 'getAgent'>;
      credentials: EgressCredentials;
      /** Whether a node id is a Kubernetes node of this installation. */
      isClusterNode: (nodeId: string) => boolean;
      /**
       * How long "no such agent" is believed without asking the store again. Longer saves
       * more reads under a flood of made-up ids; it also delays an agent created under an id
       * probed just before (ids are random, so in practice never). @default 5_000
       */
      unknownAgentTtlMs?: number | undefined;
      /**
       * Store reads for credential checks running at once, over all clients of this
       * process. Bounds the database load agents with valid credentials can
       * cause, and how many reads a slow store piles up. @default 32
       */
      maxStoreReadsInFlight?: number | undefined;
      /** @default systemClock */
      clock?: Clock | undefined;
    },
  ) {
    this.clock = d.clock ?? systemClock;
    this.unknownAgentTtlMs = d.unknownAgentTtlMs ?? 5_000;
    this.maxStoreReadsInFlight = d.maxStoreReadsInFlight ?? DEFAULT_MAX_STORE_READS_IN_FLIGHT;
    if (!Number.isInteger(this.maxStoreReadsInFlight) || this.maxStoreReadsInFlight <= 0) {
      throw new InputError(`maxStoreReadsInFlight must be a positive integer, got ${String(d.maxStoreReadsInFlight)}`);
    }
  }

  /** Store reads in flight now (reads whose clients gave up included, until the store answers). */
  get storeReadsInFlight(): number {
    return this.reads.size;
  }

  /** @throws the signal's reason when it aborts before the store answers (the proxy answers 503). */
  async authenticate(credentials: ProxyCredentials, signal?: AbortSignal): Promise<ProxyAuthResult> {
    const id = credentials.username;
    // The user name is echoed only when it looks like an agent id: a token pasted there is not.
    if (!AGENT_ID.test(id)) return { ok: false, reason: 'bad-credentials', detail: 'proxy credentials: the user name is not an agent id' };
    const bad: ProxyAuthResult = { ok: false, reason: 'bad-credentials', detail: `proxy credentials for agent ${id} are not valid` };
    let agent: Agent | undefined;
    if (!this.knownUnknown(id)) {
      const read = this.readAgent(id);
      if (read === undefined) {
        return { ok: false, reason: 'unavailable', detail: `${this.maxStoreReadsInFlight} proxy credential checks are reading the store already; retry` };
      }
      agent = await abortable(read, signal);
    }
    if (agent === undefined) {
      this.rememberUnknown(id);
      // Unknown agent and wrong token read alike, and cost the same comparison: the answer
      // tells nothing about which ids exist.
      this.d.credentials.verify(NOBODY, credentials.password);
      return bad;
    }
    if (!this.d.credentials.verify(agent, credentials.password)) return bad;
    const notEligible = (why: string): ProxyAuthResult => ({ ok: false, reason: 'not-eligible', agentId: agent.id, tenantId: agent.tenantId, detail: `agent ${agent.id} ${why}` });
    const policy = networkPolicyOf(agent.spec.network);
    if (policy.mode !== 'allowlist') return notEligible(`has network mode "${policy.mode}", not "allowlist"`);
    if (!LIVE_PHASES.has(agent.status.phase)) return notEligible(`is ${agent.status.phase}, not running`);
    if (agent.status.node === undefined || !this.d.isClusterNode(agent.status.node)) return notEligible(`does not run on a Kubernetes node`);
    return { ok: true, policy: { agentId: agent.id, tenantId: agent.tenantId, allowlist: this.allowlistOf(agent, policy.allow) } };
  }

  /** The read of `id` in flight, or a new one; undefined when the cap is reached. */
  private readAgent(id: string): Promise<Agent | undefined> | undefined {
    const pending = this.reads.get(id);
    if (pending !== undefined) return pending;
    if (this.reads.size >= this.maxStoreReadsInFlight) return undefined;
    const read = this.d.store.getAgent(id).finally(() => this.reads.delete(id));
    // Every waiter may have given up (abortable): a late failure must not be unhandled.
    read.catch(() => undefined);
    this.reads.set(id, read);
    return read;
  }

  private knownUnknown(id: string): boolean {
    const until = this.unknown.get(id);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.unknown.delete(id);
    return false;
  }

  private rememberUnknown(id: string): void {
    this.unknown.delete(id);
    this.unknown.set(id, this.clock.now() + this.unknownAgentTtlMs);
    if (this.unknown.size > MAX_CACHED_UNKNOWN) this.unknown.delete(this.unknown.keys().next().value!);
  }

  private allowlistOf(agent: Agent, rules: readonly string[]): Allowlist {
    const cached = this.compiled.get(agent.id);
    if (cached !== undefined && cached.version === agent.version) return cached.allowlist;
    const allowlist = compileAllowlist(rules);
    this.compiled.delete(agent.id);
    this.compiled.set(agent.id, { version: agent.version, allowlist });
    if (this.compiled.size > MAX_CACHED_ALLOWLISTS) this.compiled.delete(this.compiled.keys().next().value!);
    return allowlist;
  }
}

/** Options of ClusterEgress. */
export interface ClusterEgressOptions {
  /** AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN; port 0 picks a free port. */
  listen: { host: string; port: number };
  authenticator: ProxyAuthenticator;
  /**
   * `deniedRanges` is extended with this machine's own addresses (the platform Pod's), and
   * `lockedAddressClasses` with PLATFORM_LOCAL_CLASSES (loopback, link-local, metadata,
   * unspecified), which no rule unlocks here. Pass the platform's own services as
   * `platformAddresses` (build-security does).
   */
  proxyOptions: EgressProxyOptions;
  logger?: Logger | undefined;
}

/**
 * The egress proxy for agents on Kubernetes nodes: its own EgressProxy (no source-IP
 * registry) with one credential listener, which every replica runs behind a Service; the
 * nodes' `egressProxy` names that Service. Runs beside the Docker agent network's proxy,
 * sharing its audit sink.
 *
 * The proxy's connections leave from the platform Pod, whose NetworkPolicy lets it reach its
 * database, Redis and the Kubernetes API: whatever an agent's address rules say, this
 * listener refuses the Pod's own addresses, its loopback and link-local ranges and the
 * platform's services (docs/kubernetes.md, "Egress of allowlist agents").
 */
export class ClusterEgress {
  readonly proxy: EgressProxy;
  private bound: EgressListenAddress | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: ClusterEgressOptions) {
    this.logger = options.logger ?? silentLogger;
    const denied = [...(options.proxyOptions.deniedRanges ?? []), ...hostAddresses()];
    const locked = [...(options.proxyOptions.lockedAddressClasses ?? []), ...PLATFORM_LOCAL_CLASSES];
    this.proxy = new EgressProxy({ ...options.proxyOptions, deniedRanges: [...new Set(denied)], lockedAddressClasses: [...new Set(locked)] });
  }

  /** Where it listens, once started. */
  get address(): EgressListenAddress | undefined {
    return this.bound;
  }

  /** Starts the listener; idempotent. @throws the listen error (EADDRINUSE, ...) or the signal's reason. */
  async start(signal?: AbortSignal): Promise<EgressListenAddress> {
    if (this.bound !== undefined) return this.bound;
    this.bound = await this.proxy.listen({ ...this.options.listen, signal, authenticate: this.options.authenticator });
    this.logger.info({ host: this.bound.host, port: this.bound.port }, 'egress proxy for Kubernetes agents listening');
    return this.bound;
  }

  async close(signal?: AbortSignal): Promise<void> {
    this.bound = undefined;
    await this.proxy.close(signal);
  }
}
