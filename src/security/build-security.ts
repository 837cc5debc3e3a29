import type { Config } from '../config.js';
import type { Clock } from '../domain/clock.js';
import type { Logger } from '../domain/logger.js';
import type { EventRecorder } from '../controllers/event-recorder.js';
import type { AgentService } from '../services/agent-service.js';
import type { Store } from '../store/store.js';
import type { Runtime } from '../runtime/runtime.js';
import { DockerRuntime } from '../runtime/docker/docker-runtime.js';
import { KubernetesRuntime } from '../runtime/kubernetes/kubernetes-runtime.js';
import { formatDockerEndpoint, parseDockerHost } from '../runtime/docker/docker-host.js';
import type { RouteRegistry } from '../api/route-registry.js';
import { registerSecretRoutes } from '../api/routes/secret-routes.js';
import { registerAgentNetworkRoutes } from '../api/routes/agent-network-routes.js';
import { AgentNetworkManager } from './agent-network-manager.js';
import { AgentSandbox } from './agent-sandbox.js';
import { PLATFORM_LOCAL_CLASSES } from '../egress/address-policy.js';
import { hostOfUrl, PlatformAddresses } from '../egress/platform-addresses.js';
import { ClusterEgress, ClusterEgressAuthenticator } from './cluster-egress.js';
import { EgressCredentials } from './egress-credentials.js';
import { HostFirewall } from './host-firewall.js';
import { loadSecretCipher } from './secret-keyring.js';
import { SecretService } from './secret-service.js';
import { createSpecAdmission } from './spec-admission.js';
import { StoreAuditSink } from './store-audit-sink.js';

/** Test-only knobs of the egress proxy (never from the environment). */
export interface SecurityOverrides {
  /** Hosts file the proxy consults first (tests map names to local servers). */
  egressHostsFile?: string | undefined;
  /** FOR TESTS ONLY: trust the hosts file's answers (e.g. 127.0.0.1); see EgressProxyOptions. */
  trustEgressHostsFile?: boolean | undefined;
  /**
   * Nodes that run on this machine's Docker, when the runtimes are wrapped (test scoping) and
   * cannot be recognised as local DockerRuntimes. @default detected
   */
  egressNodeIds?: readonly string[] | undefined;
}

/** The security layer of one platform process, wired. */
export interface Security {
  secrets: SecretService;
  sandbox: AgentSandbox;
  /** Undefined when no node is the local Docker host. */
  network: AgentNetworkManager | undefined;
  /** The proxy listener for Kubernetes agents; undefined unless AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN is set. */
  clusterEgress: ClusterEgress | undefined;
  /** Starts what listens (the cluster egress listener); call once, before serving. */
  start(signal?: AbortSignal): Promise<void>;
  auditSink: StoreAuditSink;
  registerRoutes(routes: RouteRegistry): void;
  close(): Promise<void>;
}

/**
 * Builds secrets, the sandbox hooks of the controller, and the egress network for the nodes
 * that run on this machine's Docker (the proxy must run beside the containers it serves);
 * Kubernetes nodes bring their own (see ClusterNetwork).
 */
export async function buildSecurity(d: {
  config: Readonly<Config>;
  store: Store;
  clock: Clock;
  logger: Logger;
  events: EventRecorder;
  agents: AgentService;
  instanceId: string;
  runtimes: readonly Runtime[];
  overrides?: SecurityOverrides | undefined;
}): Promise<Security> {
  const { config, store, clock, logger } = d;
  const cipher = loadSecretCipher({ key: config.secretKey, keyFile: config.secretKeyFile, oldKeys: config.secretKeysOld, dataDir: config.dataDir, logger: logger.child({ component: 'secrets' }) });
  const secrets = new SecretService(store, cipher, clock);
  const auditSink = new StoreAuditSink(store, { logger: logger.child({ component: 'egress-audit' }) });
  // Clusters network their agents themselves (NetworkPolicies, Services, their own egress
  // proxy): allowlist and expose agents run there without the local egress network.
  const clusters = new Map(d.runtimes.filter((r): r is KubernetesRuntime => r instanceof KubernetesRuntime).map((r) => [r.nodeId, r]));
  // What the platform itself talks to: the proxies connect from the platform's machine, which
  // reaches these, so no agent's address rule may name them (docs/security.md, "Egress").
  const platformAddresses = new PlatformAddresses({
    ranges: config.egressDeniedRanges,
    hosts: [hostOfUrl(config.databaseUrl), hostOfUrl(config.redisUrl), config.kubernetesServiceHost, ...[...clusters.values()].map((r) => r.client.server.hostname)].filter(
      (h): h is string => h !== undefined,
    ),
    logger: logger.child({ component: 'egress-platform-addresses' }),
  });
  await platformAddresses.refresh();
  // Re-resolved so a moved database or API server stays refused; each round is bounded by the DNS timeout.
  const resolving = new AbortController();
  const resolveTimer = setInterval(() => {
    platformAddresses.refresh(resolving.signal).catch((err: unknown) => logger.debug({ err }, 'egress platform address refresh stopped'));
  }, config.egressPlatformResolveIntervalMs);
  resolveTimer.unref();
  const platformProxyOptions = { deniedRanges: config.egressDeniedRanges, platformAddresses, lockedAddressClasses: PLATFORM_LOCAL_CLASSES };
  const localDocker = formatDockerEndpoint(parseDockerHost(config.dockerHost));
  const localNodes = new Set(
    d.overrides?.egressNodeIds ?? d.runtimes.filter((r) => r instanceof DockerRuntime && formatDockerEndpoint(r.endpoint) === localDocker).map((r) => r.nodeId),
  );
  let network: AgentNetworkManager | undefined;
  if (localNodes.size > 0) {
    const firewall = new HostFirewall();
    const firewallReady = config.egressFirewall && (await firewall.available());
    if (config.egressFirewall && !firewallReady) logger.warn({}, 'iptables is not usable: agent networks get no host firewall (AGENT_PLATFORM_EGRESS_FIREWALL)');
    network = new AgentNetworkManager({
      instanceId: d.instanceId,
      dockerHost: config.dockerHost,
      proxyOptions: {
        auditSink,
        ...platformProxyOptions,
        logger: logger.child({ component: 'egress-proxy' }),
        ...((d.overrides?.egressHostsFile ?? config.egressHostsFile) !== undefined ? { hostsFile: d.overrides?.egressHostsFile ?? config.egressHostsFile } : {}),
        ...(d.overrides?.trustEgressHostsFile === true ? { trustHostsFile: true } : {}),
      },
      proxyPort: config.egressProxyPort,
      firewall: firewallReady ? firewall : false,
      logger: logger.child({ component: 'agent-network' }),
    });
  }
  // Kubernetes agents carry per-agent proxy credentials derived from the secret key, so any
  // replica with the same key verifies them (docs/kubernetes.md, "Egress").
  const egressCredentials = EgressCredentials.fromCipher(cipher);
  let clusterEgress: ClusterEgress | undefined;
  if (config.egressClusterListen !== undefined) {
    clusterEgress = new ClusterEgress({
      listen: config.egressClusterListen,
      authenticator: new ClusterEgressAuthenticator({ store, credentials: egressCredentials, isClusterNode: (id) => clusters.has(id) }),
      proxyOptions: {
        auditSink,
        ...platformProxyOptions,
        logger: logger.child({ component: 'cluster-egress-proxy' }),
        ...((d.overrides?.egressHostsFile ?? config.egressHostsFile) !== undefined ? { hostsFile: d.overrides?.egressHostsFile ?? config.egressHostsFile } : {}),
        ...(d.overrides?.trustEgressHostsFile === true ? { trustHostsFile: true } : {}),
      },
      logger: logger.child({ component: 'cluster-egress' }),
    });
  } else {
    const withProxy = [...clusters.values()].filter((r) => r.egressProxyUrl !== undefined).map((r) => r.nodeId);
    if (withProxy.length > 0) {
      logger.warn({ nodes: withProxy }, 'Kubernetes nodes name an egressProxy but AGENT_PLATFORM_EGRESS_CLUSTER_LISTEN is unset: this replica serves no proxy for their allowlist agents');
    }
  }
  const sandbox = new AgentSandbox({
    secrets,
    network,
    servesNode: (id) => localNodes.has(id),
    clusterOf: (id) => clusters.get(id),
    egressCredentials,
    platformMinimum: config.minIsolation,
    // Read per container, not cached: a tenant raised to gvisor gets it on its next container.
    tenantMinimum: async (tenantId) => (await store.getTenant(tenantId))?.minIsolation,
    logger: logger.child({ component: 'sandbox' }),
  });
  d.agents.specAdmission = createSpecAdmission(secrets);
  return {
    secrets,
    sandbox,
    network,
    clusterEgress,
    auditSink,
    async start(signal) {
      await clusterEgress?.start(signal);
    },
    registerRoutes(routes) {
      registerSecretRoutes(routes, { secrets });
      registerAgentNetworkRoutes(routes, { agents: d.agents, store, clock, events: d.events, sandbox });
    },
    async close() {
      clearInterval(resolveTimer);
      resolving.abort();
      await network?.close();
      await clusterEgress?.close();
      await auditSink.close();
    },
  };
}
