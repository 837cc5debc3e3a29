import { AGENT_ID_LABEL, INSTANCE_LABEL, MANAGED_LABEL, NETWORK_MODE_LABEL, RESERVED_LABEL_PREFIX, TENANT_LABEL, containerName, type ContainerSpec } from '../runtime.js';

/**
 * Node-wide lock-down settings applied to every container the Docker adapter creates.
 * All optional for callers; `resolveContainerConfigOptions` fills the defaults.
 */
export interface ContainerConfigOptions {
  /**
   * Numeric uid the agent process runs as; also owns /data and /tmp.
   * @default 1000
   */
  runAsUid: number;
  /** @default 1000 */
  runAsGid: number;
  /**
   * Soft and hard limit of open files.
   * @default 1024
   */
  nofileLimit: number;
  /**
   * Docker network mode: "none" (no interface but lo), or a network name once
   * network policies exist.
   * @default "none"
   */
  networkMode: string;
  /**
   * OCI runtime name registered with the daemon, e.g. "runsc" for gVisor.
   * Undefined leaves the daemon default (runc); the field is then omitted.
   * @default undefined
   */
  ociRuntime?: string | undefined;
  /**
   * OCI runtime for `runtimeClass: "gvisor"` without a network (registered by
   * scripts/ensure-gvisor.sh with --network=none: the sandbox has loopback only).
   * @default "runsc"
   */
  gvisorRuntime: string;
  /**
   * OCI runtime for `runtimeClass: "gvisor"` attached to a network (registered with
   * --network=host: the sandbox uses the container's namespace, so Docker's internal network
   * and the host's iptables rules apply as for runc).
   * @default "runsc-net"
   */
  gvisorNetworkRuntime: string;
  /**
   * Added to the pids limit of gVisor containers: the host's pids cgroup counts the sandbox's
   * own threads too (about 45 for an idle sandbox on the ptrace platform), and a sandbox that
   * hits the limit dies instead of failing one fork.
   * @default 64
   */
  gvisorPidsOverhead: number;
  /**
   * json-file log rotation: a chatty agent cannot fill the node's disk.
   * @default "10m"
   */
  logMaxSize: string;
  /** @default 3 */
  logMaxFiles: number;
  /**
   * Platform installation id, written as a label; list() and watch() only see
   * containers of this installation. Undefined: all managed containers.
   * @default undefined
   */
  instanceId?: string | undefined;
}

export const DEFAULT_CONTAINER_CONFIG_OPTIONS: Readonly<ContainerConfigOptions> = Object.freeze({
  runAsUid: 1000,
  runAsGid: 1000,
  nofileLimit: 1024,
  networkMode: 'none',
  ociRuntime: undefined,
  gvisorRuntime: 'runsc',
  gvisorNetworkRuntime: 'runsc-net',
  gvisorPidsOverhead: 64,
  logMaxSize: '10m',
  logMaxFiles: 3,
  instanceId: undefined,
});

export const resolveContainerConfigOptions = (options: Partial<ContainerConfigOptions> = {}): ContainerConfigOptions => {
  const resolved: ContainerConfigOptions = { ...DEFAULT_CONTAINER_CONFIG_OPTIONS };
  for (const [key, value] of Object.entries(options) as [keyof ContainerConfigOptions, unknown][]) {
    // Explicit undefined keeps the default, as with every other options object here.
    if (value !== undefined) (resolved as unknown as Record<string, unknown>)[key] = value;
  }
  return resolved;
};

/** The HostConfig fields we set (a subset of the Docker Engine API's HostConfig). */
export interface DockerHostConfig {
  NanoCpus: number;
  CpuShares: number;
  Memory: number;
  MemorySwap: number;
  PidsLimit: number;
  ReadonlyRootfs: boolean;
  Tmpfs: Record<string, string>;
  CapDrop: string[];
  SecurityOpt: string[];
  NetworkMode: string;
  Privileged: boolean;
  Ulimits: { Name: string; Soft: number; Hard: number }[];
  OomKillDisable: boolean;
  RestartPolicy: { Name: string; MaximumRetryCount: number };
  LogConfig: { Type: string; Config: Record<string, string> };
  Init: boolean;
  Runtime?: string;
  Dns?: string[];
  DeviceRequests?: { Driver: string; DeviceIDs: string[]; Capabilities: string[][] }[];
}

/** Body of POST /containers/create (the fields we set). */
export interface DockerCreateBody {
  Image: string;
  Entrypoint?: string[];
  Cmd?: string[];
  Env: string[];
  WorkingDir?: string;
  User: string;
  Labels: Record<string, string>;
  Tty: false;
  OpenStdin: false;
  AttachStdin: false;
  AttachStdout: false;
  AttachStderr: false;
  HostConfig: DockerHostConfig;
}

/** Everything needed for POST /containers/create?name=<name>. */
export interface DockerCreateRequest {
  name: string;
  body: DockerCreateBody;
}

const MIB = 2 ** 20;

/**
 * The only upstream resolver that agents on the platform's own networks get: an address of
 * the reserved 240.0.0.0/4 block, assigned to no host (not a documentation range: those do
 * turn up as real LANs, 192.0.2.0/24 is one on the test machines). Agents there need no DNS
 * (the egress proxy resolves names), and without this setting Docker's embedded resolver
 * (127.0.0.11) forwards to the host's resolvers; Docker 20.10 (CVE-2024-29018, not backported
 * by Debian) sends those queries from the host's network namespace when the host's
 * resolv.conf names a loopback resolver (dnsmasq, unbound on 127.0.0.1), which turns DNS into
 * a way out of an internal network. Nameservers given as `Dns` are always queried from the
 * container's namespace, which has no route outside its subnet: the query dies in the container.
 */
export const AGENT_UNROUTABLE_DNS_SERVER = '240.0.0.53';

/** Kubernetes' MilliCPUToShares: 1024 shares per CPU, never below the kernel's minimum of 2. */
export const cpuSharesFromMillicores = (millicores: number): number => Math.max(2, Math.floor((millicores * 1024) / 1000));

/**
 * Pure translation of a ContainerSpec into the Docker create request. Every security
 * setting is here, in one place, so it can be reviewed and unit-tested on its exact
 * output.
 *
 * Command semantics follow Kubernetes: `command` replaces the image ENTRYPOINT (and then
 * the image CMD is ignored), `args` replaces the image CMD; both empty run the image
 * defaults.
 */
export function buildContainerConfig(spec: ContainerSpec, options: Partial<ContainerConfigOptions> = {}): DockerCreateRequest {
  const o = resolveContainerConfigOptions(options);
  const uid = o.runAsUid;
  const gid = o.runAsGid;

  const env: Record<string, string> = { ...spec.env };
  // The platform decides which GPUs are visible: a user env value must not widen it.
  delete env.NVIDIA_VISIBLE_DEVICES;
  if (spec.gpuDeviceIds.length > 0) env.NVIDIA_VISIBLE_DEVICES = spec.gpuDeviceIds.join(',');

  const hostConfig: DockerHostConfig = {
    NanoCpus: spec.cpuLimitMillicores * 1_000_000,
    CpuShares: cpuSharesFromMillicores(spec.cpuRequestMillicores),
    Memory: spec.memoryLimitMiB * MIB,
    // Equal to Memory: no swap, so the memory limit is a real limit and OOM is visible.
    MemorySwap: spec.memoryLimitMiB * MIB,
    PidsLimit: spec.pidsLimit,
    ReadonlyRootfs: true,
    Tmpfs: {
      '/tmp': `rw,noexec,nosuid,nodev,size=${spec.tmpSizeMiB}m,uid=${uid},gid=${gid},mode=1777`,
      '/data': `rw,nosuid,nodev,size=${spec.dataSizeMiB}m,uid=${uid},gid=${gid},mode=0700`,
    },
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges'],
    NetworkMode: spec.networkName ?? o.networkMode,
    Privileged: false,
    Ulimits: [{ Name: 'nofile', Soft: o.nofileLimit, Hard: o.nofileLimit }],
    OomKillDisable: false,
    // The platform's controllers restart agents (with backoff and accounting), not Docker.
    RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
    LogConfig: { Type: 'json-file', Config: { 'max-size': o.logMaxSize, 'max-file': String(o.logMaxFiles) } },
    Init: false,
  };
  if (o.ociRuntime !== undefined) hostConfig.Runtime = o.ociRuntime;
  // Open egress keeps Docker's DNS (it may go anywhere anyway); every other network is the
  // platform's internal one, where DNS must lead nowhere (see AGENT_UNROUTABLE_DNS_SERVER).
  if (spec.networkName !== undefined && spec.egress !== 'open') hostConfig.Dns = [AGENT_UNROUTABLE_DNS_SERVER];
  // The isolation class wins over the node's default runtime: gvisor must never quietly become runc.
  if (spec.runtimeClass === 'gvisor') {
    hostConfig.Runtime = spec.networkName !== undefined ? o.gvisorNetworkRuntime : o.gvisorRuntime;
    hostConfig.PidsLimit = spec.pidsLimit + o.gvisorPidsOverhead;
  }
  if (spec.gpuDeviceIds.length > 0) {
    hostConfig.DeviceRequests = [{ Driver: 'nvidia', DeviceIDs: [...spec.gpuDeviceIds], Capabilities: [['gpu']] }];
  }

  // User labels under the platform's prefix are dropped, not only overwritten: the API refuses
  // them, but records stored before it did may hold some, and one the platform does not set
  // itself (the instance label on a node without an instance id) would otherwise stay. The
  // platform's own labels come last all the same.
  const userLabels = Object.fromEntries(Object.entries(spec.labels).filter(([key]) => !key.startsWith(RESERVED_LABEL_PREFIX)));
  const body: DockerCreateBody = {
    Image: spec.image,
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    User: `${uid}:${gid}`,
    Labels: {
      ...userLabels,
      [AGENT_ID_LABEL]: spec.agentId,
      [TENANT_LABEL]: spec.tenantId,
      [MANAGED_LABEL]: 'true',
      [NETWORK_MODE_LABEL]: spec.egress ?? 'none',
      ...(o.instanceId ? { [INSTANCE_LABEL]: o.instanceId } : {}),
    },
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    HostConfig: hostConfig,
  };
  if (spec.command.length > 0) {
    body.Entrypoint = [...spec.command];
    body.Cmd = [...spec.args];
  } else if (spec.args.length > 0) {
    body.Cmd = [...spec.args];
  }
  if (spec.workingDir !== undefined && spec.workingDir !== '') body.WorkingDir = spec.workingDir;

  return { name: containerName(spec.agentId), body };
}
