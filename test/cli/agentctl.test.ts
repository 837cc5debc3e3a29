/**
 * agentctl end to end over real HTTP. The server is the contract test double in
 * contract-double-server.ts (not the platform): these tests check the CLI's requests,
 * output and exit codes against the documented API contract.
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { run } from '../../src/cli/agentctl.js';
import type { AgentJson } from '../../src/cli/api-types.js';
import { startContractDouble, type ContractDouble } from './contract-double-server.js';

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

let double: ContractDouble;
let dir: string;

beforeAll(async () => {
  double = await startContractDouble();
  dir = await mkdtemp(join(tmpdir(), 'agentctl-e2e-'));
});
afterAll(async () => {
  await double?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  double.agents.clear();
  double.requests.length = 0;
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function sink() {
  const chunks: string[] = [];
  return { stream: { write: (c: string | Uint8Array) => (chunks.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8')), true), isTTY: false }, text: () => chunks.join('') };
}

/** Runs agentctl in-process against the double; HOME points at an empty dir so no real config leaks in. */
async function cli(args: string[], options: { env?: Record<string, string>; stdin?: string } = {}): Promise<Result> {
  const out = sink();
  const err = sink();
  const code = await run(args, {
    stdout: out.stream,
    stderr: err.stream,
    env: { HOME: dir, AGENTCTL_SERVER: double.url, AGENTCTL_TOKEN: double.token, ...options.env },
    stdin: options.stdin === undefined ? undefined : Readable.from([Buffer.from(options.stdin)]),
  });
  return { code, stdout: out.text(), stderr: err.text() };
}

async function createAgent(name: string, extra = ''): Promise<AgentJson> {
  const res = await cli(['create', '-f', '-'], { stdin: `name: ${name}\nimage: agent-samples/echo:1\n${extra}` });
  expect(res).toMatchObject({ code: 0, stderr: '' });
  return [...double.agents.values()].find((a) => a.name === name)!;
}

const closedPort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

describe('agentctl create', () => {
  it('creates an agent from a YAML file and sends the bearer token', async () => {
    const file = join(dir, 'agent.yaml');
    await writeFile(file, 'name: summarizer\nimage: agent-samples/echo:1\nargs: ["hello"]\nenv:\n  MODE: fast\nresources:\n  cpu: 250m\n  memory: 256Mi\nlabels:\n  team: ml\n');
    const res = await cli(['create', '-f', file]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const agent = [...double.agents.values()][0]!;
    expect(res.stdout).toBe(`agent/summarizer created (id ${agent.id})\n`);
    expect(agent).toMatchObject({ name: 'summarizer', labels: { team: 'ml' }, spec: { args: ['hello'], env: { MODE: 'fast' }, resources: { cpuMillicores: 250, memoryMiB: 256 } } });
    const post = double.requests.find((r) => r.method === 'POST');
    expect(post?.headers.authorization).toBe(`Bearer ${double.token}`);
  });

  it('creates every agent of a multi-document file and replays with an idempotency key', async () => {
    const file = join(dir, 'many.yaml');
    await writeFile(file, 'name: one\nimage: i:1\n---\n- name: two\n  image: i:2\n');
    const first = await cli(['create', '-f', file, '--idempotency-key', 'k1']);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^agent\/one created .*\nagent\/two created /);
    const keys = double.requests.filter((r) => r.method === 'POST').map((r) => r.headers['idempotency-key']);
    expect(keys).toEqual(['k1-1', 'k1-2']);
    const replay = await cli(['create', '-f', file, '--idempotency-key', 'k1']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/^agent\/one unchanged \(idempotent replay\)/);
    expect(double.agents.size).toBe(2);
  });

  it('reports the server error per agent and exits 1', async () => {
    await createAgent('dup');
    const res = await cli(['create', '-f', '-'], { stdin: '{"name":"dup","image":"i:1"}' });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('Error: an agent named "dup" already exists (AGENT_NAME_TAKEN) [agent dup]\n');
  });

  it('rejects a malformed manifest before sending anything', async () => {
    const res = await cli(['create', '-f', '-'], { stdin: 'name: a\nimage: i\n---\nimage: i\n' });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^Error: <stdin> \(document 2\): "name" is required and must be a string \(INVALID_MANIFEST\)\n$/);
    expect(double.requests).toHaveLength(0);
  });
});

describe('agentctl get', () => {
  it('prints a table by default, JSON with -o json, and filters by label and phase', async () => {
    const a = await createAgent('alpha', 'labels: {team: ml}\n');
    const b = await createAgent('beta', 'labels: {team: web}\n');
    double.setStatus(a.id, { phase: 'Running', node: 'node-1' });
    double.setStatus(b.id, { phase: 'Failed', reason: 'OOMKilled', exitCode: 137 });

    const table = await cli(['get', 'agents']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME +ID +PHASE +REASON +NODE +RESTARTS +AGE$/);
    expect(lines[1]).toMatch(new RegExp(`^alpha +${a.id} +Running +<none> +node-1 +0 +[0-9]+s$`));
    expect(lines[2]).toMatch(new RegExp(`^beta +${b.id} +Failed +OOMKilled +<none> +0 +[0-9]+s$`));

    const json = await cli(['get', 'agents', '-o', 'json']);
    expect(JSON.parse(json.stdout).items.map((x: AgentJson) => x.name)).toEqual(['alpha', 'beta']);

    const wide = await cli(['get', 'agents', '-o', 'wide', '-l', 'team=web']);
    expect(wide.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(wide.stdout).toMatch(/beta .* agent-samples\/echo:1 +100m +128Mi +137\n$/);

    const running = await cli(['get', 'agents', '--phase', 'Running', '-o', 'name']);
    expect(running.stdout).toBe('agent/alpha\n');
  });

  it('gets one agent by name or by id, as the object itself', async () => {
    const a = await createAgent('gamma');
    const byName = await cli(['get', 'agent', 'gamma', '-o', 'json']);
    expect(JSON.parse(byName.stdout)).toEqual(double.agents.get(a.id));
    expect(double.requests.some((r) => r.url.includes('name=gamma'))).toBe(true);
    const byId = await cli(['get', 'agent', a.id, '-o', 'yaml']);
    expect(byId.stdout).toMatch(/^id: [0-9a-f]+\ntenantId: default\nname: gamma\n/);
  });

  it('follows nextCursor across pages', async () => {
    for (let i = 0; i < 5; i++) await createAgent(`page-${i}`);
    double.maxPageSize = 2;
    try {
      double.requests.length = 0;
      const res = await cli(['get', 'agents', '-o', 'name']);
      expect(res.stdout).toBe('agent/page-0\nagent/page-1\nagent/page-2\nagent/page-3\nagent/page-4\n');
      expect(double.requests.map((r) => new URL(r.url, double.url).searchParams.get('cursor'))).toEqual([null, '2', '4']);
    } finally {
      double.maxPageSize = 1000;
    }
  });

  it('resolves names by listing when the server does not know ?name=', async () => {
    const a = await createAgent('legacy');
    await createAgent('other');
    double.nameFilter = false;
    try {
      const res = await cli(['get', 'agent', 'legacy', '-o', 'json']);
      expect(res.code).toBe(0);
      expect(JSON.parse(res.stdout).id).toBe(a.id);
      expect(double.requests.filter((r) => r.method === 'GET').map((r) => r.url)).toEqual(['/api/v1/agents?name=legacy&limit=500', '/api/v1/agents?limit=500']);
    } finally {
      double.nameFilter = true;
    }
  });

  it('says when there are no agents', async () => {
    const res = await cli(['get', 'agents']);
    expect(res).toEqual({ code: 0, stdout: '', stderr: 'No agents found.\n' });
  });

  it('prints the API error and exits 1 for an unknown agent', async () => {
    const res = await cli(['get', 'agent', 'ghost']);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('Error: agent "ghost" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n');
  });

  it('passes the server 404 through for an id-shaped argument', async () => {
    const res = await cli(['delete', 'deadbeefdeadbeef']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/\(AGENT_NOT_FOUND\)\n$/);
    expect(double.requests.some((r) => r.method === 'GET' && r.url === '/api/v1/agents/deadbeefdeadbeef')).toBe(true);
  });

  it('shows the server message and code for a wrong token', async () => {
    const res = await cli(['get', 'agents'], { env: { AGENTCTL_TOKEN: 'wrong' } });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('Error: missing or invalid bearer token (UNAUTHENTICATED)\n');
  });

  it('hints at the token when none is configured and the server says 401', async () => {
    const res = await cli(['get', 'agents'], { env: { AGENTCTL_TOKEN: '' } });
    expect(res.stderr).toBe('Error: missing or invalid bearer token; no token is configured: pass --token or set AGENTCTL_TOKEN (UNAUTHENTICATED)\n');
  });

  it('uses --server and --token over the environment', async () => {
    const port = await closedPort();
    const res = await cli(['get', 'agents', '--server', double.url, '--token', double.token], { env: { AGENTCTL_SERVER: `http://127.0.0.1:${port}`, AGENTCTL_TOKEN: 'wrong' } });
    expect(res).toMatchObject({ code: 0, stderr: 'No agents found.\n' });
  });
});

describe('agentctl describe', () => {
  it('shows status, spec and recent events', async () => {
    const a = await createAgent('delta', 'command: ["python3", "-m", "agent"]\nrestartPolicy: OnFailure\n');
    double.setStatus(a.id, { phase: 'Running', node: 'node-2', containerId: 'c0ffee' });
    double.setStatus(a.id, { phase: 'Failed', reason: 'Error', message: 'exit code 2', exitCode: 2 });
    const res = await cli(['describe', 'agent', 'delta']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^Name: +delta$/m);
    expect(res.stdout).toMatch(new RegExp(`^ID: +${a.id}$`, 'm'));
    expect(res.stdout).toMatch(/^ {2}Phase: +Failed$/m);
    expect(res.stdout).toMatch(/^ {2}Node: +node-2$/m);
    expect(res.stdout).toMatch(/^ {2}Command: +python3 -m agent$/m);
    expect(res.stdout).toMatch(/^ {2}Restart Policy: +OnFailure$/m);
    const events = res.stdout.slice(res.stdout.indexOf('Events:'));
    expect(events).toMatch(/Normal +Created +[0-9]+s +agent delta created/);
    expect(events).toMatch(/Warning +Error +[0-9]+s +exit code 2/);
  });
});

describe('agentctl logs', () => {
  it('prints logs, honours --tail and --timestamps', async () => {
    const a = await createAgent('talker');
    for (const line of ['one', 'two', 'three']) double.appendLog(a.id, line);
    expect((await cli(['logs', 'talker'])).stdout).toBe('one\ntwo\nthree\n');
    expect((await cli(['logs', 'talker', '--tail', '2'])).stdout).toBe('two\nthree\n');
    expect((await cli(['logs', 'talker', '--tail', '1', '--timestamps'])).stdout).toMatch(/^\d{4}-\d\d-\d\dT[0-9:.]+Z three\n$/);
    const since = await cli(['logs', 'talker', '--since', '1h30m']);
    expect(since.stdout).toBe('one\ntwo\nthree\n');
    expect(double.requests.some((r) => r.url.includes('since=5400s'))).toBe(true);
  });

  it('follows until the agent finishes', async () => {
    const a = await createAgent('streamer');
    double.setStatus(a.id, { phase: 'Running' });
    double.appendLog(a.id, 'before');
    const timers = [
      setTimeout(() => double.appendLog(a.id, 'during-1'), 150),
      setTimeout(() => double.appendLog(a.id, 'during-2'), 300),
      setTimeout(() => double.setStatus(a.id, { phase: 'Succeeded', exitCode: 0 }), 450),
    ];
    const started = Date.now();
    const res = await cli(['logs', '-f', 'streamer']);
    timers.forEach(clearTimeout);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('before\nduring-1\nduring-2\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
  });

  it('stops following on interrupt and exits 130', async () => {
    const a = await createAgent('endless');
    double.setStatus(a.id, { phase: 'Running' });
    double.appendLog(a.id, 'tick');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300).unref();
    const out = sink();
    const started = Date.now();
    const code = await run(['logs', '-f', 'endless'], { stdout: out.stream, stderr: sink().stream, env: { HOME: dir, AGENTCTL_SERVER: double.url, AGENTCTL_TOKEN: double.token }, signal: controller.signal });
    expect(code).toBe(130);
    expect(out.text()).toBe('tick\n');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('rejects a bad --tail before calling the server', async () => {
    const res = await cli(['logs', 'x', '--tail', 'ten']);
    expect(res).toMatchObject({ code: 1, stderr: 'Error: --tail ten: must be a whole number of lines (INVALID_ARGUMENT)\n' });
  });
});

describe('agentctl wait', () => {
  it('exits 0 once the agent reaches the phase', async () => {
    const a = await createAgent('job-ok');
    const timers = [setTimeout(() => double.setStatus(a.id, { phase: 'Running' }), 200), setTimeout(() => double.setStatus(a.id, { phase: 'Succeeded', exitCode: 0 }), 700)];
    const started = Date.now();
    const res = await cli(['wait', 'job-ok', '--for=phase=Succeeded', '--timeout', '10s']);
    timers.forEach(clearTimeout);
    expect(res).toEqual({ code: 0, stdout: 'agent/job-ok condition met (phase Succeeded)\n', stderr: '' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(650);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('exits 1 with the current phase on timeout', async () => {
    const a = await createAgent('job-slow');
    double.setStatus(a.id, { phase: 'Running' });
    const started = Date.now();
    const res = await cli(['wait', 'job-slow', '--for', 'phase=Succeeded', '--timeout', '1s']);
    const elapsed = Date.now() - started;
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('Error: timed out after 1s waiting for agent "job-slow" to be phase Succeeded; it is Running (WAIT_TIMEOUT)\n');
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2500);
  });

  it('exits 1 early with phase, reason and message when the agent ends in another terminal phase', async () => {
    const a = await createAgent('job-bad');
    setTimeout(() => double.setStatus(a.id, { phase: 'Failed', reason: 'OOMKilled', message: 'memory limit 128Mi exceeded', exitCode: 137 }), 200).unref();
    const started = Date.now();
    const res = await cli(['wait', 'job-bad', '--for=phase=Succeeded', '--timeout', '30s']);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('Error: agent "job-bad" is Failed (reason OOMKilled, exit code 137, message: memory limit 128Mi exceeded), not Succeeded (WAIT_CONDITION_UNREACHABLE)\n');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('waits for deletion', async () => {
    const a = await createAgent('job-gone');
    setTimeout(() => double.agents.delete(a.id), 300).unref();
    const res = await cli(['wait', 'job-gone', '--for=delete', '--timeout', '5s']);
    expect(res).toMatchObject({ code: 0, stdout: 'agent/job-gone condition met (deleted)\n' });
  });

  it('rejects a bad condition', async () => {
    const res = await cli(['wait', 'x', '--for=phase=Done']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/unknown phase "Done"/);
  });
});

describe('agentctl stop, start, delete', () => {
  it('stops and starts by name', async () => {
    const a = await createAgent('toggle');
    expect(await cli(['stop', 'toggle'])).toEqual({ code: 0, stdout: 'agent/toggle stop requested (phase: Stopping)\n', stderr: '' });
    expect(double.agents.get(a.id)!.desiredState).toBe('stopped');
    expect((await cli(['start', a.id])).stdout).toBe('agent/toggle start requested (phase: Pending)\n');
    expect(double.agents.get(a.id)!.desiredState).toBe('running');
  });

  it('deletes several agents, reporting 200 and 202, and fails for the missing one', async () => {
    const a = await createAgent('old-1');
    const b = await createAgent('old-2');
    double.setStatus(b.id, { phase: 'Running' });
    const res = await cli(['delete', 'agent', 'old-1', 'missing', 'old-2']);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('agent "old-1" deleted\nagent "old-2" deletion requested (phase: Deleting)\n');
    expect(res.stderr).toBe('Error: agent "missing" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n');
    expect(double.agents.has(a.id)).toBe(false);
    const after = await cli(['get', 'agent', 'old-1']);
    expect(after).toMatchObject({ code: 1, stderr: expect.stringMatching(/AGENT_NOT_FOUND/) });
  });
});

describe('agentctl without a server', () => {
  it('says the platform cannot be reached and exits 1', async () => {
    const port = await closedPort();
    const res = await cli(['get', 'agents'], { env: { AGENTCTL_SERVER: `http://127.0.0.1:${port}` } });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(new RegExp(`^Error: cannot reach the platform at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.* \\(PLATFORM_UNREACHABLE\\)\\n$`));
  });

  it('shows status and the start of the body when an error response is not JSON', async () => {
    const proxy = createHttpServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>upstream down</html>');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const res = await cli(['get', 'agents'], { env: { AGENTCTL_SERVER: `http://127.0.0.1:${(proxy.address() as { port: number }).port}` } });
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('Error: 502 Bad Gateway: <html>upstream down</html> (HTTP_502)\n');
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('still prints the client version', async () => {
    const port = await closedPort();
    const res = await cli(['version'], { env: { AGENTCTL_SERVER: `http://127.0.0.1:${port}` } });
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^Client Version: v\d+\.\d+\.\d+\n$/);
    expect(res.stderr).toMatch(/not answering: cannot reach the platform/);
  });

  it('reports the server health when it answers', async () => {
    const res = await cli(['version']);
    expect(res.stdout).toBe(`Client Version: v0.1.0\nServer: ${double.url} (healthy, version v0.0.0-double)\n`);
  });
});

describe('agentctl as a process', () => {
  const tsxMain = ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts')];
  const env = () => ({ ...process.env, HOME: dir, AGENTCTL_SERVER: double.url, AGENTCTL_TOKEN: double.token, AGENTCTL_CONFIG: '' });

  it('writes the table to stdout and exits 0', async () => {
    await createAgent('proc');
    const { stdout, stderr } = await execFileAsync(process.execPath, [...tsxMain, 'get', 'agents'], { env: env(), cwd: repoRoot });
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^NAME .*\nproc /);
  });

  it('exits 1 with the error on stderr', async () => {
    const err = (await execFileAsync(process.execPath, [...tsxMain, 'get', 'agent', 'nobody'], { env: env(), cwd: repoRoot }).catch((e: unknown) => e)) as { code: number; stderr: string; stdout: string };
    expect(err.code).toBe(1);
    expect(err.stdout).toBe('');
    expect(err.stderr).toBe('Error: agent "nobody" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n');
  });

  it('reads server and token from the config file', async () => {
    await createAgent('from-config');
    const config = join(dir, 'config.yaml');
    await writeFile(config, `server: ${double.url}\ntoken: ${double.token}\n`);
    const { stdout } = await execFileAsync(process.execPath, [...tsxMain, 'get', 'agents', '-o', 'name'], {
      env: { ...process.env, HOME: dir, AGENTCTL_CONFIG: config, AGENTCTL_SERVER: '', AGENT_PLATFORM_URL: '', AGENTCTL_TOKEN: '', AGENT_PLATFORM_ADMIN_TOKEN: '' },
      cwd: repoRoot,
    });
    expect(stdout).toBe('agent/from-config\n');
    expect(double.requests.at(-1)?.headers.authorization).toBe(`Bearer ${double.token}`);
  });
});
