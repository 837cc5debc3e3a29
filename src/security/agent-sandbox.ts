import type { Agent, AgentStatus, IsolationClass } from '../domain/agent.js';
import { NotFoundError } from '../domain/errors.js';
import { SecretDecryptError } from './secret-cipher.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import type { ContainerSpec, ObservedContainer } from '../runtime/runtime.js';
import type { AgentNetworkManager } from './agent-network-manager.js';
import { needsAgentNetwork } from './agent-network-manager.js';
import { effectiveIsolation } from './isolation-policy.js';
import { networkPolicyOf } from './network-policy.js';
import type { SecretService } from './secret-service.js';

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

/** Options of AgentSandbox. */
export interface AgentSandboxOptions {
  secrets: SecretService;
  /** Absent: no node can run allowlist or expose agents (they fail to start with a clear error). */
  network?: AgentNetworkManager | undefined;
  /** Nodes whose containers `network` manages (the platform's local Docker host). */
  servesNode: (nodeId: string) => boolean;
  /** AGENT_PLATFORM_MIN_ISOLATION. @default "runc" */
  platformMinimum?: IsolationClass | undefined;
  /**
   * The tenant's minimum class (the tenant record's `minIsolation`), read at each container
   * create so a PATCH applies to the next container without a restart. @default none
   */
  tenantMinimum?: ((tenantId: string) => Promise<IsolationClass | undefined>) | undefined;
  logger?: Logger | undefined;
}

const sameEndpoints = (a: AgentStatus['endpoints'], b: AgentStatus['endpoints']): boolean => JSON.stringify(a ?? []) === JSON.stringify(b ?? []);

/** The security side of running an agent: isolation class, network and secrets. */
export class AgentSandbox implements ContainerHooks {
  private readonly logger: Logger;

  constructor(private readonly o: AgentSandboxOptions) {
    this.logger = o.logger ?? silentLogger;
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
    if (policy.mode === 'open') {
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
    if (!this.attachable(agent)) return { isolation, endpoints: undefined };
    const endpoints = await this.o.network!.attach(agent, containerId, signal);
    return { isolation, endpoints: endpoints.length > 0 ? endpoints : undefined };
  }

  async observe(agent: Agent, observed: ObservedContainer | undefined | 'unreachable', signal?: AbortSignal): Promise<Partial<AgentStatus> | undefined> {
    if (observed === 'unreachable' || this.o.network === undefined) return undefined;
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
    await this.o.network?.detach(agentId);
  }

  /** Re-applies a changed allowlist to the running container (new connections only). */
  async policyChanged(agent: Agent, signal?: AbortSignal): Promise<void> {
    if (agent.status.phase !== 'Running' || agent.status.containerId === undefined || !this.attachable(agent)) return;
    await this.o.network!.attach(agent, agent.status.containerId, signal);
  }

  private attachable(agent: Agent): boolean {
    return this.o.network !== undefined && needsAgentNetwork(agent) && agent.status.node !== undefined && this.o.servesNode(agent.status.node);
  }
}
