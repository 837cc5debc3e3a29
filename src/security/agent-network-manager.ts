import { networkInterfaces } from 'node:os';
import type Docker from 'dockerode';
import { newDockerClient } from '../runtime/docker/docker-client.js';
import type { Agent, AgentEndpoint } from '../domain/agent.js';
import { silentLogger, type Logger } from '../domain/logger.js';
import { EgressProxy, type EgressProxyOptions } from '../egress/egress-proxy.js';
import { parseDockerHost } from '../runtime/docker/docker-host.js';
import type { HostFirewall } from './host-firewall.js';
import { networkPolicyOf } from './network-policy.js';
import { PortForwarder } from './port-forwarder.js';

/** Options of AgentNetworkManager. */
export interface AgentNetworkManagerOptions {
  /** Platform installation id: names the network, bridge and iptables chain. */
  instanceId: string;
  /** The Docker host whose containers this manager networks. @default DOCKER_HOST or the local socket */
  dockerHost?: string | undefined;
  /**
   * Options of the egress proxy the manager runs. `deniedRanges` is extended with the host's
   * own addresses and the agent subnet, which no allow rule can unlock.
   */
  proxyOptions: EgressProxyOptions;
  /** Port the proxy listens on at the network's gateway; 0 picks one. @default 3128 */
  proxyPort?: number | undefined;
  /** Host INPUT rules; `false` when iptables is not available (then only the proxy's bind protects the host). */
  firewall: HostFirewall | false;
  /** Network for `open` agents (NAT to anywhere). @default "bridge" */
  openNetwork?: string | undefined;
  logger?: Logger | undefined;
}

/** What the manager created on the Docker host; see start(). */
export interface AgentNetworkInfo {
  name: string;
  subnet: string;
  gateway: string;
  /** `http://<gateway>:<port>`: the agents' HTTP_PROXY. */
  proxyUrl: string;
  /** Whether the host INPUT rules are installed. */
  firewalled: boolean;
}

interface Attachment {
  containerId: string;
  ip: string;
}

/** Agents that need the internal network: allowlist egress, or ports to expose. */
export const needsAgentNetwork = (agent: Agent): boolean =>
  networkPolicyOf(agent.spec.network).mode === 'allowlist' || (networkPolicyOf(agent.spec.network).mode !== 'open' && (agent.spec.expose?.length ?? 0) > 0);

/**
 * The agents' network on one Docker host and everything around it:
 * - one `--internal` bridge network per platform installation (`ap-egress-<instance>`), with
 *   inter-container communication off (`com.docker.network.bridge.enable_icc=false`): no
 *   route out, and agents on it cannot reach each other;
 * - the egress proxy listening on that network's gateway address only;
 * - host INPUT rules: from the agent subnet only the proxy port is reachable on the host;
 * - per running agent: its container IP registered with the proxy (allowlist mode) and its
 *   exposed ports relayed from 127.0.0.1.
 * One shared network rather than one per agent: Docker's default address pools hold about 30
 * networks, and ICC off gives the same agent-to-agent isolation (tested in
 * test/security/escape.test.ts).
 */
export class AgentNetworkManager {
  readonly networkName: string;
  private readonly bridgeName: string;
  private readonly chain: string;
  private readonly docker: Docker;
  private readonly forwarder = new PortForwarder();
  private readonly attachments = new Map<string, Attachment>();
  private readonly logger: Logger;
  private starting: Promise<AgentNetworkInfo> | undefined;
  private info: AgentNetworkInfo | undefined;
  private egress: EgressProxy | undefined;

  constructor(private readonly options: AgentNetworkManagerOptions) {
    const short = options.instanceId.replace(/[^a-zA-Z0-9]/g, '').slice(0, 10);
    this.networkName = `ap-egress-${short}`;
    // Linux interface names hold at most 15 characters.
    this.bridgeName = `apeg-${short}`;
    this.chain = `AP-EGRESS-${short}`;
    this.logger = options.logger ?? silentLogger;
    const endpoint = parseDockerHost(options.dockerHost ?? process.env.DOCKER_HOST);
    this.docker = newDockerClient(endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port, protocol: 'http' });
  }

  /** The running proxy (after start). */
  get proxy(): EgressProxy | undefined {
    return this.egress;
  }

  /** Network name for `open` agents. */
  get openNetwork(): string {
    return this.options.openNetwork ?? 'bridge';
  }

  /**
   * Creates the network (or finds it after a restart), starts the proxy on its gateway and
   * installs the host rules. Idempotent; concurrent callers share one start.
   */
  start(signal?: AbortSignal): Promise<AgentNetworkInfo> {
    this.starting ??= this.doStart(signal).catch((err: unknown) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /** The network info once started. */
  current(): AgentNetworkInfo | undefined {
    return this.info;
  }

  /** Environment every allowlist agent gets: the proxy, for curl, pip, requests, node and Go alike. */
  proxyEnv(info: AgentNetworkInfo): Record<string, string> {
    return {
      HTTP_PROXY: info.proxyUrl,
      HTTPS_PROXY: info.proxyUrl,
      http_proxy: info.proxyUrl,
      https_proxy: info.proxyUrl,
      NO_PROXY: 'localhost,127.0.0.1',
      no_proxy: 'localhost,127.0.0.1',
    };
  }

  /**
   * Brings the proxy registration and port relays of a running container in line with the
   * agent's spec (level-triggered: after a start, a restart of the platform, or a PATCH).
   * Any registration another agent left on the container's address is removed first, so an
   * address reused by Docker never carries someone else's policy. Returns the endpoints.
   */
  async attach(agent: Agent, containerId: string, signal?: AbortSignal): Promise<AgentEndpoint[]> {
    const info = await this.start(signal);
    const proxy = this.egress!;
    const ip = await this.containerIp(containerId, info.name);
    if (ip === undefined) {
      await this.detach(agent.id);
      return [];
    }
    const previous = this.attachments.get(agent.id);
    if (previous !== undefined && previous.ip !== ip && proxy.policyOf(previous.ip)?.agentId === agent.id) proxy.unregister(previous.ip);
    const holder = proxy.policyOf(ip);
    if (holder !== undefined && holder.agentId !== agent.id) {
      this.logger.warn({ ip, agentId: agent.id, previousAgentId: holder.agentId }, 'removing a stale egress registration from a reused address');
      proxy.unregister(ip);
    }
    const policy = networkPolicyOf(agent.spec.network);
    if (policy.mode === 'allowlist') {
      const input = { agentId: agent.id, tenantId: agent.tenantId, allowlist: policy.allow };
      if (proxy.policyOf(ip) === undefined) proxy.register(ip, input);
      else proxy.update(ip, input);
    } else if (proxy.policyOf(ip) !== undefined) {
      proxy.unregister(ip);
    }
    this.attachments.set(agent.id, { containerId, ip });
    const ports = (agent.spec.expose ?? []).map((e) => e.port);
    if (ports.length === 0) {
      await this.forwarder.close(agent.id);
      return [];
    }
    if (!this.forwarder.isOpen(agent.id, ip, ports)) await this.forwarder.open(agent.id, ip, ports);
    return this.forwarder.endpointsOf(agent.id);
  }

  /** True when the agent's current container is attached (registered and relayed). */
  isAttached(agentId: string, containerId: string): boolean {
    return this.attachments.get(agentId)?.containerId === containerId;
  }

  /** Unregisters the agent's address and closes its relays. Unknown agents are a no-op. */
  async detach(agentId: string): Promise<void> {
    const attachment = this.attachments.get(agentId);
    if (attachment !== undefined) {
      this.attachments.delete(agentId);
      if (this.egress?.policyOf(attachment.ip)?.agentId === agentId) this.egress.unregister(attachment.ip);
    }
    await this.forwarder.close(agentId);
  }

  /**
   * Stops relays and the proxy listener and, when no container uses it any more, removes
   * the network and then its host rules. Running agents lose egress (never the firewall)
   * until the next start re-creates the proxy.
   */
  async close(signal?: AbortSignal): Promise<void> {
    await this.forwarder.closeAll();
    for (const id of [...this.attachments.keys()]) await this.detach(id);
    const info = this.info;
    this.info = undefined;
    this.starting = undefined;
    await this.egress?.close(signal);
    this.egress = undefined;
    if (info === undefined) return;
    try {
      await this.docker.getNetwork(info.name).remove();
    } catch (err) {
      // In use by containers that outlive this process (a restart): they keep the network,
      // and the host rules stay too — agents must never reach host services while the
      // control plane is down. The next start finds both in place.
      this.logger.debug({ err, network: info.name }, 'agent network and its host rules left in place');
      return;
    }
    if (this.options.firewall !== false) {
      await this.options.firewall.remove({ chain: this.chain, subnet: info.subnet }).catch((err: unknown) => this.logger.warn({ err }, 'removing host firewall rules failed'));
    }
  }

  private async doStart(signal?: AbortSignal): Promise<AgentNetworkInfo> {
    signal?.throwIfAborted();
    const { subnet, gateway } = await this.ensureNetwork();
    const denied = [...(this.options.proxyOptions.deniedRanges ?? []), ...hostAddresses(), gateway, subnet];
    this.egress = new EgressProxy({ ...this.options.proxyOptions, deniedRanges: [...new Set(denied)] });
    const address = await this.egress.listen({ host: gateway, port: this.options.proxyPort ?? 3128, signal });
    let firewalled = false;
    if (this.options.firewall !== false) {
      await this.options.firewall.install({ chain: this.chain, subnet, proxyIp: gateway, proxyPort: address.port });
      firewalled = true;
    } else {
      this.logger.warn({ subnet }, 'no host firewall: agents can reach host services listening on all addresses via the gateway');
    }
    this.info = { name: this.networkName, subnet, gateway, proxyUrl: `http://${gateway}:${address.port}`, firewalled };
    this.logger.info({ ...this.info }, 'agent egress network ready');
    return this.info;
  }

  private async ensureNetwork(): Promise<{ subnet: string; gateway: string }> {
    try {
      return ipamOf(await this.docker.getNetwork(this.networkName).inspect(), this.networkName);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
    try {
      await this.docker.createNetwork({
        Name: this.networkName,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        Options: { 'com.docker.network.bridge.enable_icc': 'false', 'com.docker.network.bridge.name': this.bridgeName },
        Labels: { 'io.agent-platform.managed': 'true', 'io.agent-platform.instance': this.options.instanceId },
      });
    } catch (err) {
      // Another replica created it a moment ago.
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
    }
    return ipamOf(await this.docker.getNetwork(this.networkName).inspect(), this.networkName);
  }

  private async containerIp(containerId: string, network: string): Promise<string | undefined> {
    try {
      const inspected = (await this.docker.getContainer(containerId).inspect()) as { NetworkSettings?: { Networks?: Record<string, { IPAddress?: string }> } };
      const ip = inspected.NetworkSettings?.Networks?.[network]?.IPAddress;
      return ip === undefined || ip === '' ? undefined : ip;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }
}

function ipamOf(inspected: { IPAM?: { Config?: { Subnet?: string; Gateway?: string }[] } }, name: string): { subnet: string; gateway: string } {
  const config = inspected.IPAM?.Config?.find((c) => c.Subnet !== undefined && c.Gateway !== undefined && !c.Subnet.includes(':'));
  if (config?.Subnet === undefined || config.Gateway === undefined) throw new Error(`docker network ${name} has no IPv4 subnet and gateway`);
  return { subnet: config.Subnet, gateway: config.Gateway };
}

/** The host's own non-loopback addresses: no agent may reach them through the proxy. */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(a.address.split('%')[0]!);
  }
  return out;
}
