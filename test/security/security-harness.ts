import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { loadConfig, type Config } from '../../src/config.js';
import { buildPlatform, type Platform } from '../../src/platform.js';
import { DockerRuntime } from '../../src/runtime/docker/docker-runtime.js';
import { AGENT_ID_LABEL } from '../../src/runtime/runtime.js';
import { isCI } from '../helpers/require-docker.js';
import { ScopedRuntime } from '../integration/scoped-runtime.js';

const exec = promisify(execFile);

export const PYTHON_IMAGE = 'agent-samples/simple-python:latest';
/** PYTHON_IMAGE plus a setuid-root copy of python at /usr/local/bin/suidpy. */
export const ESCAPE_IMAGE = 'agent-platform/escape-test:latest';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const uniqueName = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

/**
 * Whether dockerd has both gVisor runtimes (runsc, runsc-net; scripts/ensure-gvisor.sh).
 * Without them: skip, or fail when CI=true.
 */
export async function requireGvisor(): Promise<boolean> {
  let runtimes = '';
  try {
    runtimes = (await exec('docker', ['info', '-f', '{{json .Runtimes}}'])).stdout;
  } catch {
    runtimes = '';
  }
  const ok = runtimes.includes('"runsc"') && runtimes.includes('"runsc-net"');
  if (!ok && isCI) throw new Error('CI=true but dockerd has no runsc/runsc-net runtime; run scripts/ensure-gvisor.sh');
  return ok;
}

/** Builds ESCAPE_IMAGE (idempotent; --network none: the build needs no network). */
export async function ensureEscapeImage(): Promise<string> {
  try {
    await exec('docker', ['image', 'inspect', ESCAPE_IMAGE]);
    return ESCAPE_IMAGE;
  } catch {
    // build below
  }
  const dir = await mkdtemp(join(tmpdir(), 'escape-image-'));
  try {
    await writeFile(join(dir, 'Dockerfile'), [`FROM ${PYTHON_IMAGE}`, 'RUN cp "$(readlink -f /usr/bin/python3)" /usr/local/bin/suidpy && chmod 4755 /usr/local/bin/suidpy', ''].join('\n'));
    await exec('docker', ['build', '--network', 'none', '-q', '-t', ESCAPE_IMAGE, dir], { timeout: 180_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return ESCAPE_IMAGE;
}

/** Runs `docker exec` in a container; stdin optional. Never throws on a non-zero exit. */
export function dockerExec(
  containerId: string,
  argv: string[],
  stdin?: string,
  timeoutMs = 120_000,
  onStdout?: (text: string) => void,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', ['exec', ...(stdin !== undefined ? ['-i'] : []), containerId, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      onStdout?.(stdout);
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (stdin !== undefined) child.stdin.end(stdin);
    else child.stdin.end();
  });
}

export interface AgentJson {
  id: string;
  name: string;
  spec: Record<string, unknown> & { env: Record<string, unknown>; network: { mode: string; allow?: string[] } };
  status: {
    phase: string;
    reason?: string;
    message?: string;
    containerId?: string;
    exitCode?: number;
    isolation?: string;
    endpoints?: { port: number; hostIp: string; hostPort: number }[];
  };
}

export interface ApiResponse<T = unknown> {
  status: number;
  text: string;
  json: T;
}

/** One platform for security tests: real Docker, SQLite, the egress network, a test hosts file. */
export class SecurityPlatform {
  readonly docker = new Docker();
  readonly logs = new PassThrough();
  logText = '';

  private constructor(
    readonly platform: Platform,
    readonly baseUrl: string,
    readonly apiPort: number,
    readonly token: string,
    readonly config: Readonly<Config>,
    readonly dataDir: string,
    readonly agentIds: Set<string>,
  ) {}

  static async start(opts: { env?: Record<string, string>; hostsFile?: string; logLevel?: string } = {}): Promise<SecurityPlatform> {
    const dataDir = await mkdtemp(join(tmpdir(), 'ap-sec-'));
    const token = `sec_${randomBytes(16).toString('hex')}`;
    const config = loadConfig({
      AGENT_PLATFORM_PORT: '0',
      // All interfaces on purpose: agents must not reach the API even when it listens everywhere.
      AGENT_PLATFORM_HOST: '0.0.0.0',
      AGENT_PLATFORM_LOG_LEVEL: opts.logLevel ?? 'silent',
      AGENT_PLATFORM_RESYNC_INTERVAL_MS: '500',
      AGENT_PLATFORM_STOP_GRACE_MS: '1000',
      AGENT_PLATFORM_START_TIMEOUT_MS: '60000',
      AGENT_PLATFORM_EGRESS_PROXY_PORT: '0',
      AGENT_PLATFORM_DATA_DIR: dataDir,
      AGENT_PLATFORM_ADMIN_TOKEN: token,
      DOCKER_HOST: process.env.DOCKER_HOST,
      ...opts.env,
    });
    const ids = new Set<string>();
    const runtime = new ScopedRuntime(new DockerRuntime({ nodeId: config.nodeName, dockerHost: config.dockerHost }), (id) => ids.has(id));
    const logs = new PassThrough();
    const platform = await buildPlatform(config, {
      runtimes: [runtime],
      logStream: logs,
      security: { egressHostsFile: opts.hostsFile, trustEgressHostsFile: opts.hostsFile !== undefined, egressNodeIds: [config.nodeName] },
    });
    platform.bus.subscribe((e) => {
      if (e.objectKind === 'Agent') ids.add(e.objectId);
    });
    const address = await platform.start();
    const port = Number(new URL(address.replace('0.0.0.0', '127.0.0.1')).port);
    const p = new SecurityPlatform(platform, `http://127.0.0.1:${port}`, port, token, config, dataDir, ids);
    logs.on('data', (c: Buffer) => (p.logText += c.toString()));
    return p;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, token: string | null = this.token): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const maybe = json as { id?: unknown } | undefined;
    if (typeof maybe?.id === 'string') this.agentIds.add(maybe.id);
    return { status: res.status, text, json: json as T };
  }

  async create(body: Record<string, unknown>, token?: string): Promise<AgentJson> {
    const res = await this.request<AgentJson>('POST', '/api/v1/agents', body, token);
    if (res.status !== 201) throw new Error(`create ${String(body.name)}: ${res.status} ${res.text}`);
    return res.json;
  }

  async get(id: string): Promise<AgentJson> {
    const res = await this.request<AgentJson>('GET', `/api/v1/agents/${id}`);
    if (res.status !== 200) throw new Error(`GET ${id}: ${res.status} ${res.text}`);
    return res.json;
  }

  async waitFor(id: string, until: (a: AgentJson) => boolean, timeoutMs = 60_000, what = 'condition'): Promise<AgentJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = await this.get(id);
      if (until(a)) return a;
      if (Date.now() > deadline) throw new Error(`agent ${id}: timed out waiting for ${what}; status ${JSON.stringify(a.status)}`);
      await sleep(150);
    }
  }

  /** Waits for Running with its egress registration and endpoints in place. */
  waitRunning(id: string, timeoutMs = 90_000): Promise<AgentJson> {
    return this.waitFor(id, (a) => a.status.phase === 'Running' && a.status.containerId !== undefined, timeoutMs, 'Running');
  }

  async containerIp(containerId: string): Promise<string> {
    const info = await this.docker.getContainer(containerId).inspect();
    const net = Object.values(info.NetworkSettings.Networks)[0];
    if (!net?.IPAddress) throw new Error(`container ${containerId} has no IP`);
    return net.IPAddress;
  }

  async close(): Promise<void> {
    try {
      for (const id of this.agentIds) await this.request('DELETE', `/api/v1/agents/${id}`).catch(() => undefined);
      await this.platform.close();
    } finally {
      await Promise.allSettled(
        [...this.agentIds].map(async (id) => {
          const list = await this.docker.listContainers({ all: true, filters: { label: [`${AGENT_ID_LABEL}=${id}`] } });
          for (const c of list) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
        }),
      );
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }
}

/** One line of the escape report. */
export interface AttemptResult {
  isolation: string;
  attempt: string;
  blocked: boolean;
  evidence: string;
}

/** Collects attempts of every test in the file and writes the report at the end. */
export class EscapeReport {
  readonly rows: AttemptResult[] = [];

  add(isolation: string, attempt: string, blocked: boolean, evidence: string): void {
    this.rows.push({ isolation, attempt, blocked, evidence: evidence.replace(/\s+/g, ' ').trim().slice(0, 160) });
  }

  /** A row that is neither an attempt nor a control: behaviour worth knowing. */
  addInfo(isolation: string, attempt: string, evidence: string): void {
    this.rows.push({ isolation, attempt, blocked: true, evidence: `info: ${evidence.replace(/\s+/g, ' ').trim().slice(0, 150)}` });
  }

  markdown(): string {
    const lines = ['| isolation | attempt | outcome | evidence |', '| --- | --- | --- | --- |'];
    for (const r of this.rows) {
      const outcome = r.evidence.startsWith('info: ') ? 'info' : r.attempt.startsWith('CONTROL') ? (r.blocked ? 'works (control)' : '**CONTROL FAILED**') : r.blocked ? 'blocked' : '**ESCAPED**';
      lines.push(`| ${r.isolation} | ${r.attempt} | ${outcome} | ${r.evidence.replace(/\|/g, '\\|')} |`);
    }
    return `# Escape test report (${new Date().toISOString()})\n\n${lines.join('\n')}\n`;
  }
}

/**
 * The command of an attacker agent: runs the Python jobs dropped into /tmp/jobs as children
 * of the agent's own process tree, so every attempt runs exactly as agent code would (with
 * the container's seccomp filter, which gVisor does not apply to `docker exec` processes).
 */
export const AGENT_RUNNER = `import glob, json, os, signal, subprocess, time
d = '/tmp/jobs'
os.makedirs(d, exist_ok=True)

def answer(base, out):
    # /tmp may still be full for a moment after a job filled it (gVisor frees tmpfs pages
    # lazily): retry rather than let the runner die and every later job go unanswered.
    for _ in range(100):
        try:
            tmp = base + '.tmp'
            with open(tmp, 'w') as f:
                json.dump(out, f)
            os.rename(tmp, base + '.out')
            return
        except OSError:
            time.sleep(0.2)

def run(job):
    spec = json.load(open(job)); os.remove(job)
    base = job[:-4]
    try:
        # Output to files, not pipes: a child the job leaves behind (a server, a sleeper)
        # would hold a pipe open and hang the runner waiting for end-of-file.
        with open(base + '.o', 'w+') as so, open(base + '.e', 'w+') as se:
            p = subprocess.Popen(['python3', '-c', spec['script']] + spec['args'], stdout=so, stderr=se, start_new_session=True)
            try:
                code = p.wait(timeout=spec['timeoutS'])
            except subprocess.TimeoutExpired:
                code = -1
            # Whatever the job started dies with it, so no job outlives its answer.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            if code == -1:
                p.wait()
            so.seek(0); se.seek(0)
            out = {'code': code, 'stdout': so.read(), 'stderr': 'timeout' if code == -1 else se.read()}
    except Exception as e:
        # The runner itself failed (no room for the output files, ...): say so as the answer.
        out = {'code': -2, 'stdout': '', 'stderr': 'runner: ' + repr(e)}
    for f in (base + '.o', base + '.e'):
        try:
            os.remove(f)
        except OSError:
            pass
    answer(base, out)

while True:
    for job in sorted(glob.glob(d + '/*.job')):
        run(job)
    time.sleep(0.1)
`;

/**
 * Runs a Python script inside an agent started with AGENT_RUNNER, as a child of the agent's
 * process; `docker exec` only carries the script in and the result out.
 */
export async function runInAgent(containerId: string, script: string, args: string[] = [], timeoutMs = 170_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const id = randomBytes(6).toString('hex');
  const job = JSON.stringify({ script, args, timeoutS: Math.ceil(timeoutMs / 1000) });
  const put = await dockerExec(containerId, ['sh', '-c', `mkdir -p /tmp/jobs && cat > /tmp/jobs/${id}.part && mv /tmp/jobs/${id}.part /tmp/jobs/${id}.job`], job);
  if (put.code !== 0) throw new Error(`could not hand the job to the agent: ${put.stderr}`);
  const deadline = Date.now() + timeoutMs + 15_000;
  for (;;) {
    // A short timeout per poll: an exec that hangs (runsc under a loaded machine, seen once in
    // CI right after the gVisor fork bomb) is killed and the next poll tries again.
    const got = await dockerExec(containerId, ['sh', '-c', `cat /tmp/jobs/${id}.out 2>/dev/null && rm -f /tmp/jobs/${id}.out`], undefined, 20_000);
    if (got.code === 0 && got.stdout.trim() !== '') return JSON.parse(got.stdout) as { code: number; stdout: string; stderr: string };
    if (Date.now() > deadline) throw new Error(`job ${id} did not finish in ${timeoutMs} ms`);
    await sleep(300);
  }
}

/** The address the test DNS responder gives for every name (TEST-NET-2, routed nowhere). */
export const DNS_RESPONDER_ADDRESS = '198.51.100.7';

/** A DNS server the test runs on the host; `names` lists every name it was asked for. */
export interface DnsResponder {
  readonly names: string[];
  close(): Promise<void>;
}

/** The A answer for one DNS query message (any name gets DNS_RESPONDER_ADDRESS). */
function dnsAnswer(query: Buffer, names: string[]): Buffer | undefined {
  if (query.length < 17) return undefined;
  let i = 12;
  const labels: string[] = [];
  while (i < query.length && query[i] !== 0) {
    labels.push(query.subarray(i + 1, i + 1 + query[i]!).toString('latin1'));
    i += query[i]! + 1;
  }
  const questionEnd = i + 5;
  if (questionEnd > query.length) return undefined;
  names.push(labels.join('.'));
  const header = Buffer.from(query.subarray(0, 12));
  header.writeUInt16BE(0x8180, 2); // response, recursion desired + available, NOERROR
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 6);
  header.writeUInt32BE(0, 8);
  const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...DNS_RESPONDER_ADDRESS.split('.').map(Number)]);
  return Buffer.concat([header, query.subarray(12, questionEnd), answer]);
}

/**
 * Runs a DNS responder (UDP and TCP) on host:port that answers every A query with
 * DNS_RESPONDER_ADDRESS. Port 53 needs root (or CAP_NET_BIND_SERVICE); the bind error is thrown.
 */
export async function startDnsResponder(host: string, port = 53): Promise<DnsResponder> {
  const names: string[] = [];
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    const reply = dnsAnswer(msg, names);
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, host, () => resolve());
  });
  const tcp = createServer((s) => {
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const reply = dnsAnswer(buf.subarray(2, 2 + buf.readUInt16BE(0)), names);
        if (reply) s.end(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]));
        else s.destroy();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, host, () => resolve());
  }).catch((err: unknown) => {
    udp.close();
    throw err;
  });
  return {
    names,
    close: () => new Promise<void>((resolve) => udp.close(() => tcp.close(() => resolve()))),
  };
}

/**
 * Stand-ins for a Docker daemon exposed on TCP (`-H tcp://0.0.0.0:2375`, 2376 for TLS): answer
 * every request like GET /version does, so an agent that reaches one can tell. A port that is
 * taken already is left to whatever listens there (if that is a real dockerd, the better target).
 */
export async function startDockerApiStandIns(ports: readonly number[] = [2375, 2376]): Promise<{ ports: number[]; close(): Promise<void> }> {
  const servers: Server[] = [];
  for (const port of ports) {
    const server = createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => {
        const body = JSON.stringify({ ApiVersion: '1.41', Version: 'escape-test-stand-in' });
        s.end(`HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      });
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '0.0.0.0', () => resolve(true));
    });
    if (ok) servers.push(server);
  }
  return {
    ports: servers.map((s) => (s.address() as { port: number }).port),
    close: async () => {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

/** `docker run --rm -i <dockerArgs> <image> python3 - <scriptArgs>` with the script on stdin. */
export function dockerRunPython(dockerArgs: string[], image: string, script: string, scriptArgs: string[] = [], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', ['run', '--rm', '-i', ...dockerArgs, image, 'python3', '-', ...scriptArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(script);
  });
}
