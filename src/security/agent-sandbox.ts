import type { Agent, AgentEndpoint, AgentStatus, IsolationClass } from '../domain/agent.js';
import { NotFoundError } from '../domain/errors.js';
import { restartBackoffMs } from '../domain/backoff.js';
import { systemClock, type Clock } from '../domain/clock.js';
import { SecretDecryptError } from './secret-cipher.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { ContainerSpec, ObservedContainer } from '../runtime/runtime.js';
import type { AgentNetworkManager } from './agent-network-manager.js';
import { needsAgentNetwork } from './agent-network-manager.js';
import { effectiveIsolation } from './isolation-policy.js';
import { networkPolicyOf } from './network-policy.js';
import type { SecretService } from './secret-service.js';
import type { EgressCredentials } from './egress-credentials.js';

/**
 * What the agent controller asks the security layer around each container. Optional in the
 * controller: without it agents get the node defaults (runc, no network, plain env).
 */
export interface ContainerHooks {
  /** Completes the spec: isolation class, network, proxy and secret environment. */
  prepare(agent: Agent, spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerSpec>;
  /**
   * Right after a start: registers egress, opens exposed ports; returns status fields to
   * record. `created` is the spec prepare() returned when this start follows a create.
   */
  started(agent: Agent, containerId: string, signal?: AbortSignal, created?: ContainerSpec): Promise<Partial<AgentStatus>>;
  /**
   * On every reconcile, with what the runtime reported: repairs or removes registrations
   * (level-triggered). Returns status fields to record when they changed.
   */
  observe(agent: Agent, observed: ObservedContainer | undefined | 'unreachable', signal?: AbortSignal): Promise<Partial<AgentStatus> | undefined>;
  /** The agent record is gone. */
  forget(agentId: string): Promise<void>;
}

/**
 * The agent's spec cannot be run as it stands (a missing secret, a network this node cannot
 * give): the controller fails the agent with `reason` instead of retrying.
 */
export class SandboxSetupError extends Error {
  constructor(
    readonly reason: 'SecretNotFound' | 'SecretUnreadable' | 'NetworkUnavailable',
    message: string,
  ) {
    super(message);
    this.name = 'SandboxSetupError';
  }
}

/**
 * A node that networks agents itself: a Kubernetes cluster, where the tenant namespace's
 * NetworkPolicies confine each Pod by its egress label and a Service exposes its ports.
 * KubernetesRuntime implements it.
 */
export interface ClusterNetwork {
  /** HTTP_PROXY of allowlist agents; undefined when the cluster has no usable egress proxy. */
  readonly egressProxyUrl: string | undefined;
  /** Creates or updates the agent's Service and ingress policy; returns where its ports are reachable. */
  exposeAgent(tenantId: string, exposed: { agentId: string; ports: { port: number }[] }, signal?: AbortSignal): Promise<AgentEndpoint[]>;
  /** Deletes the agent's Service and ingress policy; absent ones are a no-op. */
  unexposeAgent(tenantId: string, agentId: string, signal?: AbortSignal): Promise<void>;
}

/**
 * Retry delay of a cluster expose that failed or found no cluster IP yet, by failures in a
 * row: 1 s doubling to 1 min. Each attempt costs about six API calls, and the controller
 * reconciles a running agent every resync, so retrying on every pass would load the API
 * server for as long as the Service lacks an IP; a minute is the longest an agent that
 * recovers waits for its endpoints.
 */
export const EXPOSE_RETRY_INITIAL_MS = 1_000;
export const EXPOSE_RETRY_MAX_MS = 60_000;

/** Options of AgentSandbox. */
export interface AgentSandboxOptions {
  secrets: SecretService;
  /** Absent: no node can run allowlist or expose agents (they fail to start with a clear error). */
  network?: AgentNetworkManager | undefined;
  /** Nodes whose containers `network` manages (the platform's local Docker host). */
  servesNode: (nodeId: string) => boolean;
  /**
   * The cluster behind a node that networks its agents itself (Kubernetes), else undefined.
   * @default no such nodes
   */
  clusterOf?: ((nodeId: string) => ClusterNetwork | undefined) | undefined;
  /**
   * Signs the proxy URL of allowlist agents on clusters (`http://<agentId>:<token>@proxy`):
   * the cluster listener of the egress proxy identifies them by it, not by address.
   * @default none: the bare proxy URL (a proxy that identifies no one refuses them)
   */
  egressCredentials?: EgressCredentials | undefined;
  /** AGENT_PLATFORM_MIN_ISOLATION. @default "runc" */
  platformMinimum?: IsolationClass | undefined;
  /**
   * The tenant's minimum class (the tenant record's `minIsolation`), read at each container
   * create so a PATCH applies to the next container without a restart. @default none
   */
  tenantMinimum?: ((tenantId: string) => Promise<IsolationClass | undefined>) | undefined;
  logger?: Logger | undefined;
  /** For the expose retry delay. @default systemClock */
  clock?: Clock | undefined;
}

const sameEndpoints = (a: AgentStatus['endpoints'], b: AgentStatus['endpoints']): boolean => JSON.stringify(a ?? []) === JSON.stringify(b ?? []);

/** The security side of running an agent: isolation class, network and secrets. */
export class AgentSandbox implements ContainerHooks {
  private readonly logger: Logger;
  private readonly clock: Clock;
  /**
   * Running exposed cluster agents whose last expose failed or found no cluster IP: failures
   * in a row and when the next attempt may run. An entry goes on success, when the agent
   * stops running or exposing, and with forget(); so at most one per running exposed agent.
   */
  private readonly exposeRetries = new Map<string, { failures: number; nextAttemptAtMs: number }>();

  constructor(private readonly o: AgentSandboxOptions) {
    this.logger = o.logger ?? silentLogger;
    this.clock = o.clock ?? systemClock;
  }

  async isolationOf(agent: Agent): Promise<IsolationClass> {
    return effectiveIsolation({
      requested: agent.spec.isolation,
      platformMinimum: this.o.platformMinimum ?? 'runc',
      tenantMinimum: await this.o.tenantMinimum?.(agent.tenantId),
    });
  }

  async prepare(agent: Agent, spec: ContainerSpec, signal?: AbortSignal): Promise<ContainerSpec> {
    const runtimeClass = await this.isolationOf(agent);
    const policy = networkPolicyOf(agent.spec.network);
    let networkName: string | undefined;
    let proxyEnv: Record<string, string> = {};
    const cluster = this.clusterOf(agent);
    if (cluster !== undefined) {
      // The cluster's NetworkPolicies do the confining (the Pod's egress label comes from the
      // spec); `expose` gets its Service once the Pod runs (started). Only the proxy is ours to set.
      if (policy.mode === 'allowlist') {
        if (cluster.egressProxyUrl === undefined) {
          throw new SandboxSetupError(
            'NetworkUnavailable',
            `node ${agent.status.node} (Kubernetes) has no egress proxy for network mode "allowlist": set "egressProxy": {"cidr": "<proxy address>/32", "port": <port>} on its entry in AGENT_PLATFORM_NODES, or use network mode "none"`,
          );
        }
        // The token ends up in the Pod spec's env (readable by whoever may read Pods in the
        // tenant namespace, like secretEnv values); never in the agent record, events or logs.
        proxyEnv = proxyEnvOf(this.o.egressCredentials?.proxyUrlFor(cluster.egressProxyUrl, agent) ?? cluster.egressProxyUrl);
      }
    } else if (policy.mode === 'open') {
      networkName = this.o.network?.openNetwork ?? 'bridge';
    } else if (needsAgentNetwork(agent)) {
      if (this.o.network === undefined || agent.status.node === undefined || !this.o.servesNode(agent.status.node)) {
        throw new SandboxSetupError(
          'NetworkUnavailable',
          `node ${agent.status.node ?? '?'} cannot run agents with network mode "${policy.mode}" or exposed ports: the egress proxy serves only the platform's local Docker host`,
        );
      }
      const info = await this.o.network.start(signal);
      networkName = info.name;
      if (policy.mode === 'allowlist') proxyEnv = this.o.network.proxyEnv(info);
    }
    // Secrets last but one: a secret never replaces what the platform sets (proxy), and the
    // API refuses a name in both env and secretEnv.
    let secretEnv: Record<string, string>;
    try {
      secretEnv = await this.o.secrets.resolveEnv(agent.tenantId, agent.spec.secretEnv);
    } catch (err) {
      if (err instanceof NotFoundError) throw new SandboxSetupError('SecretNotFound', err.message);
      if (err instanceof SecretDecryptError) throw new SandboxSetupError('SecretUnreadable', `a secret of agent ${agent.id} cannot be decrypted: ${err.message}`);
      throw err;
    }
    return { ...spec, env: { ...spec.env, ...secretEnv, ...proxyEnv }, runtimeClass, networkName };
  }

  async started(agent: Agent, containerId: string, signal?: AbortSignal, created?: ContainerSpec): Promise<Partial<AgentStatus>> {
    // Report the class the container was created with: the spec just created (no second
    // read of the tenant), or for a reused container (start after a stop, restart after an
    // exit) the class recorded then, not what a minimum raised since would give a new one.
    const reused = agent.status.containerId === containerId && agent.status.isolation !== undefined;
    const isolation = created?.runtimeClass ?? (reused ? agent.status.isolation! : await this.isolationOf(agent));
    const cluster = this.clusterOf(agent);
    if (cluster !== undefined) return { isolation, endpoints: await this.exposeOnCluster(cluster, agent, signal) };
    if (!this.attachable(agent)) return { isolation, endpoints: undefined };
    const endpoints = await this.o.network!.attach(agent, containerId, signal);
    return { isolation, endpoints: endpoints.length > 0 ? endpoints : undefined };
  }

  async observe(agent: Agent, observed: ObservedContainer | undefined | 'unreachable', signal?: AbortSignal): Promise<Partial<AgentStatus> | undefined> {
    if (observed === 'unreachable') return undefined;
    const cluster = this.clusterOf(agent);
    if (cluster !== undefined) return this.observeOnCluster(cluster, agent, observed, signal);
    if (this.o.network === undefined) return undefined;
    if (observed?.state === 'running' && this.attachable(agent)) {
      const wantsEndpoints = (agent.spec.expose?.length ?? 0) > 0;
      if (this.o.network.isAttached(agent.id, observed.containerId) && (agent.status.endpoints !== undefined) === wantsEndpoints) return undefined;
      try {
        const endpoints = await this.o.network.attach(agent, observed.containerId, signal);
        const next = endpoints.length > 0 ? endpoints : undefined;
        return sameEndpoints(next, agent.status.endpoints) ? undefined : { endpoints: next };
      } catch (err) {
        this.logger.warn({ err, agentId: agent.id }, 'could not attach the agent to its network');
        return undefined;
      }
    }
    await this.o.network.detach(agent.id);
    return agent.status.endpoints !== undefined ? { endpoints: undefined } : undefined;
  }

  async forget(agentId: string): Promise<void> {
    this.exposeRetries.delete(agentId);
    await this.o.network?.detach(agentId);
  }

  /** Re-applies a changed allowlist to the running container (new connections only). */
  async policyChanged(agent: Agent, signal?: AbortSignal): Promise<void> {
    if (agent.status.phase !== 'Running' || agent.status.containerId === undefined || !this.attachable(agent)) return;
    await this.o.network!.attach(agent, agent.status.containerId, signal);
  }

  private clusterOf(agent: Agent): ClusterNetwork | undefined {
    return agent.status.node === undefined ? undefined : this.o.clusterOf?.(agent.status.node);
  }

  /** The agent's Service (when it exposes ports); undefined endpoints when it exposes none. */
  private async exposeOnCluster(cluster: ClusterNetwork, agent: Agent, signal?: AbortSignal): Promise<AgentEndpoint[] | undefined> {
    const ports = agent.spec.expose ?? [];
    if (ports.length === 0) return undefined;
    const endpoints = await cluster.exposeAgent(agent.tenantId, { agentId: agent.id, ports: ports.map((p) => ({ port: p.port })) }, signal);
    return endpoints.length > 0 ? endpoints : undefined;
  }

  /**
   * Level-triggered on a cluster: a running exposed agent whose endpoints are not recorded
   * (a platform restart between start and status write, an API error at start, no cluster IP
   * yet) gets its Service again, at most once per retry delay (EXPOSE_RETRY_*); one not
   * running has no endpoints. The Service is deleted with the Pod (KubernetesRuntime.remove),
   * and here too while the agent is being deleted: its Pod may already be gone, and then the
   * controller removes nothing.
   */
  private async observeOnCluster(cluster: ClusterNetwork, agent: Agent, observed: ObservedContainer | undefined, signal?: AbortSignal): Promise<Partial<AgentStatus> | undefined> {
    const wantsEndpoints = (agent.spec.expose?.length ?? 0) > 0;
    if (agent.desired === 'deleted' && wantsEndpoints) {
      try {
        await cluster.unexposeAgent(agent.tenantId, agent.id, signal);
      } catch (err) {
        // The next reconcile of the deletion tries again; the runtime's remove() also deletes them.
        this.logger.warn({ err, agentId: agent.id }, 'could not delete the agent\'s Service on its cluster');
      }
    }
    if (observed?.state !== 'running' || !wantsEndpoints) {
      this.exposeRetries.delete(agent.id);
      return agent.status.endpoints !== undefined ? { endpoints: undefined } : undefined;
    }
    if (agent.status.endpoints !== undefined) {
      this.exposeRetries.delete(agent.id);
      return undefined;
    }
    const retry = this.exposeRetries.get(agent.id);
    if (retry !== undefined && this.clock.now() < retry.nextAttemptAtMs) return undefined;
    let endpoints: AgentEndpoint[] | undefined;
    try {
      endpoints = await this.exposeOnCluster(cluster, agent, signal);
    } catch (err) {
      if (signal?.aborted) return undefined; // shutdown or lost leadership: not the cluster's failure
      this.logger.warn({ err, agentId: agent.id }, 'could not expose the agent on its cluster');
    }
    if (endpoints !== undefined) {
      this.exposeRetries.delete(agent.id);
      return { endpoints };
    }
    const failures = (retry?.failures ?? 0) + 1;
    this.exposeRetries.set(agent.id, { failures, nextAttemptAtMs: this.clock.now() + restartBackoffMs(failures - 1, EXPOSE_RETRY_INITIAL_MS, EXPOSE_RETRY_MAX_MS) });
    return undefined;
  }

  private attachable(agent: Agent): boolean {
    return this.o.network !== undefined && needsAgentNetwork(agent) && agent.status.node !== undefined && this.o.servesNode(agent.status.node);
  }
}

/** Proxy environment of an allowlist agent, upper and lower case (curl, pip, requests, node and Go differ). */
function proxyEnvOf(proxyUrl: string): Record<string, string> {
  return {
    HTTP_PROXY: proxyUrl,
    HTTPS_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
  };
}
