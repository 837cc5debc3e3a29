/**
 * agentctl end to end against the REAL platform: buildPlatform in-process on a random port
 * (Fastify API, SQLite in a temp dir, the agent controller, the Docker runtime on the local
 * dockerd), agents running as real busybox containers. Phases, reasons, exit codes, events
 * and logs all come from the controller and Docker, never from the test.
 *
 * Two small stand-ins remain, each inside the one test that needs it and named as such:
 * a stub that answers with an HTML error page (no real server sends one), and a fault
 * proxy in front of the real platform that rejects `?name=` as an older server would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { run } from '../../src/cli/agentctl.js';
import type { AgentJson, EventJson } from '../../src/cli/api-types.js';
import { PlatformClient } from '../../src/cli/client.js';
import { ensureBusyboxImage, BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { RealPlatform, textSink, type CliResult, type CliRunOptions } from './real-platform.js';

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

// Throws when CI=true and dockerd is missing, so the file fails instead of skipping.
const hasDocker = await requireDocker();

const closedPort = async (): Promise<number> => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
};

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
};
const shut = (server: Server): Promise<void> => new Promise<void>((resolve) => server.close(() => resolve()));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs agentctl with no platform at all (only flags/env given here). */
async function cliWithoutPlatform(args: string[], env: Record<string, string>): Promise<CliResult> {
  const home = await mkdtemp(join(tmpdir(), 'agentctl-home-'));
  try {
    const out = textSink();
    const err = textSink();
    const code = await run(args, { stdout: out.stream, stderr: err.stream, env: { HOME: home, ...env } });
    return { code, stdout: out.text(), stderr: err.text() };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

describe('agentctl without a reachable platform', () => {
  it('says the platform cannot be reached and exits 1', async () => {
    const port = await closedPort();
    const res = await cliWithoutPlatform(['get', 'agents'], { AGENTCTL_SERVER: `http://127.0.0.1:${port}`, AGENTCTL_TOKEN: 't' });
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(new RegExp(`^Error: cannot reach the platform at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.* \\(PLATFORM_UNREACHABLE\\)\\n$`));
  });

  it('still prints the client version', async () => {
    const port = await closedPort();
    const res = await cliWithoutPlatform(['version'], { AGENTCTL_SERVER: `http://127.0.0.1:${port}` });
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^Client Version: v\d+\.\d+\.\d+\n$/);
    expect(res.stderr).toMatch(/not answering: cannot reach the platform/);
  });

  it('shows status and the start of the body when an error response is not JSON', async () => {
    // STUB, not the platform: stands for a reverse proxy whose upstream is down. The real
    // server always answers errors as JSON, so only a stub can produce this page.
    const htmlErrorStub = createHttpServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>upstream down</html>');
    });
    const url = await listen(htmlErrorStub);
    try {
      const res = await cliWithoutPlatform(['get', 'agents'], { AGENTCTL_SERVER: url, AGENTCTL_TOKEN: 't' });
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('Error: 502 Bad Gateway: <html>upstream down</html> (HTTP_502)\n');
    } finally {
      await shut(htmlErrorStub);
    }
  });

  it('rejects a bad --tail and a bad wait condition before calling any server', async () => {
    const port = await closedPort();
    const env = { AGENTCTL_SERVER: `http://127.0.0.1:${port}` };
    expect(await cliWithoutPlatform(['logs', 'x', '--tail', 'ten'], env)).toMatchObject({ code: 1, stderr: 'Error: --tail ten: must be a whole number of lines (INVALID_ARGUMENT)\n' });
    const wait = await cliWithoutPlatform(['wait', 'x', '--for=phase=Done'], env);
    expect(wait.code).toBe(1);
    expect(wait.stderr).toMatch(/unknown phase "Done".*\(INVALID_ARGUMENT\)\n$/);
  });
});

describe.skipIf(!hasDocker)('agentctl against the real platform (real dockerd)', () => {
  let p: RealPlatform;
  /** Per-run label value so list assertions see only this file's agents of one test. */
  const runId = randomBytes(3).toString('hex');

  beforeAll(async () => {
    await ensureBusyboxImage();
    p = await RealPlatform.start();
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 60_000);

  const cli = (args: string[], options?: CliRunOptions): Promise<CliResult> => p.cli(args, options);

  /** Straight to the HTTP API, to check what the CLI did without trusting the CLI. */
  async function api<T>(method: string, path: string): Promise<{ status: number; json: T }> {
    const res = await fetch(p.url + path, { method, headers: { authorization: `Bearer ${p.token}` } });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T };
  }
  async function apiAgent(id: string): Promise<AgentJson> {
    const res = await api<AgentJson>('GET', `/api/v1/agents/${id}`);
    expect(res.status).toBe(200);
    return res.json;
  }
  async function apiByName(name: string): Promise<AgentJson[]> {
    return (await api<{ items: AgentJson[] }>('GET', `/api/v1/agents?name=${name}`)).json.items;
  }
  /** Polls the API until the agent is in `phase`; the message names the path it took. */
  async function untilPhase(id: string, phase: string, timeoutMs = 30_000): Promise<AgentJson> {
    const deadline = Date.now() + timeoutMs;
    const path: string[] = [];
    for (;;) {
      const a = await apiAgent(id);
      const step = `${a.status.phase}/${a.status.reason ?? ''}`;
      if (path.at(-1) !== step) path.push(step);
      if (a.status.phase === phase) return a;
      if (Date.now() > deadline) throw new Error(`agent ${a.name}: not ${phase} after ${timeoutMs} ms; path ${path.join(' -> ')}; status ${JSON.stringify(a.status)}`);
      await sleep(100);
    }
  }

  /** Creates one busybox agent through `agentctl create -f -` and returns it as the API shows it. */
  async function createAgent(name: string, extraYaml = ''): Promise<AgentJson> {
    const res = await cli(['create', '-f', '-'], { stdin: `name: ${name}\nimage: ${BUSYBOX_IMAGE}\n${extraYaml}` });
    expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
    const id = /^agent\/\S+ created \(id ([a-z0-9]+)\)\n$/.exec(res.stdout)?.[1];
    expect(id, res.stdout).toBeDefined();
    return apiAgent(id!);
  }

  const SLEEPER = 'command: ["sh", "-c", "sleep 300"]\n';

  describe('create', () => {
    it('creates an agent from a YAML file; env, args and resources reach the container', async () => {
      const file = join(p.dir, 'agent.yaml');
      await writeFile(
        file,
        [
          'name: summarizer',
          `image: ${BUSYBOX_IMAGE}`,
          'command: ["sh", "-c", "echo mode=$MODE arg=$0"]',
          'args: ["hello"]',
          'env:',
          '  MODE: fast',
          'resources:',
          '  cpu: 250m',
          '  memory: 256Mi',
          'labels:',
          '  team: ml',
          '',
        ].join('\n'),
      );
      const res = await cli(['create', '-f', file]);
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      const [agent] = await apiByName('summarizer');
      expect(agent).toBeDefined();
      expect(res.stdout).toBe(`agent/summarizer created (id ${agent!.id})\n`);
      expect(agent).toMatchObject({
        name: 'summarizer',
        labels: { team: 'ml' },
        desiredState: 'running',
        spec: { image: BUSYBOX_IMAGE, args: ['hello'], env: { MODE: 'fast' }, resources: { cpuMillicores: 250, memoryMiB: 256 } },
      });
      const done = await untilPhase(agent!.id, 'Succeeded');
      expect(done.status.exitCode).toBe(0);
      expect((await cli(['logs', 'summarizer'])).stdout).toBe('mode=fast arg=hello\n');
      const [container] = await p.containersOf(agent!.id);
      const inspected = await p.docker.getContainer(container!.Id).inspect();
      expect(inspected.HostConfig.Memory).toBe(256 * 1024 * 1024);
    }, 60_000);

    it('creates every agent of a multi-document file and replays with an idempotency key', async () => {
      const file = join(p.dir, 'many.yaml');
      await writeFile(file, `name: one\nimage: ${BUSYBOX_IMAGE}\ncommand: ["true"]\n---\n- name: two\n  image: ${BUSYBOX_IMAGE}\n  command: ["true"]\n`);
      const first = await cli(['create', '-f', file, '--idempotency-key', `k-${runId}`]);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      const [one] = await apiByName('one');
      const [two] = await apiByName('two');
      expect(first.stdout).toBe(`agent/one created (id ${one!.id})\nagent/two created (id ${two!.id})\n`);

      const replay = await cli(['create', '-f', file, '--idempotency-key', `k-${runId}`]);
      expect(replay).toEqual({
        code: 0,
        stdout: `agent/one unchanged (idempotent replay) (id ${one!.id})\nagent/two unchanged (idempotent replay) (id ${two!.id})\n`,
        stderr: '',
      });
      expect(await apiByName('one')).toHaveLength(1);
      expect(await apiByName('two')).toHaveLength(1);

      // The same key with another body is refused by the server, not silently replayed.
      const reused = await cli(['create', '-f', '-', '--idempotency-key', `k-${runId}-1`], { stdin: `name: three\nimage: ${BUSYBOX_IMAGE}\n` });
      expect(reused.code).toBe(1);
      expect(reused.stderr).toMatch(/\(IDEMPOTENCY_KEY_REUSED\) \[agent three\]\n$/);
      expect(await apiByName('three')).toHaveLength(0);
    }, 30_000);

    it('reports the server error per agent and exits 1', async () => {
      await createAgent('dup', 'command: ["true"]\n');
      const res = await cli(['create', '-f', '-'], { stdin: `{"name":"dup","image":"${BUSYBOX_IMAGE}"}` });
      expect(res.code).toBe(1);
      expect(res.stdout).toBe('');
      expect(res.stderr).toBe('Error: tenant "default" already has an agent named "dup"; pick another name or delete it first (AGENT_NAME_TAKEN) [agent dup]\n');
      const invalid = await cli(['create', '-f', '-'], { stdin: `name: Bad_Name\nimage: ${BUSYBOX_IMAGE}\n` });
      expect(invalid.code).toBe(1);
      expect(invalid.stderr).toMatch(/^Error: .*name.*DNS-1123.* \(VALIDATION_FAILED\) \[agent Bad_Name\]\n$/);
    });

    it('rejects a malformed manifest before sending anything', async () => {
      const res = await cli(['create', '-f', '-'], { stdin: `name: early-${runId}\nimage: ${BUSYBOX_IMAGE}\n---\nimage: ${BUSYBOX_IMAGE}\n` });
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('Error: <stdin> (document 2): "name" is required and must be a string (INVALID_MANIFEST)\n');
      expect(await apiByName(`early-${runId}`)).toHaveLength(0);
    });
  });

  describe('get', () => {
    it('prints a table by default, JSON, YAML and wide, and filters by label and phase', async () => {
      const suite = `get-${runId}`;
      const a = await createAgent('alpha', `labels: {team: ml, suite: ${suite}}\n${SLEEPER}`);
      const b = await createAgent('beta', `labels: {team: web, suite: ${suite}}\ncommand: ["sh", "-c", "exit 3"]\n`);
      await untilPhase(a.id, 'Running');
      await untilPhase(b.id, 'Failed');

      const table = await cli(['get', 'agents', '-l', `suite=${suite}`]);
      expect(table.stderr).toBe('');
      expect(table.code).toBe(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(/^NAME +ID +PHASE +REASON +NODE +RESTARTS +AGE$/);
      expect(lines[1]).toMatch(new RegExp(`^alpha +${a.id} +Running +Started +local +0 +[0-9]+s$`));
      expect(lines[2]).toMatch(new RegExp(`^beta +${b.id} +Failed +Error +local +0 +[0-9]+s$`));

      const json = await cli(['get', 'agents', '-o', 'json', '-l', `suite=${suite}`]);
      const items = (JSON.parse(json.stdout) as { items: AgentJson[] }).items;
      expect(items.map((x) => x.name)).toEqual(['alpha', 'beta']);
      expect(items[1]!.status).toMatchObject({ phase: 'Failed', reason: 'Error', exitCode: 3 });

      const yaml = await cli(['get', 'agents', '-o', 'yaml', '-l', `suite=${suite},team=ml`]);
      expect(yaml.stdout).toMatch(new RegExp(`^items:\\n {2}- id: ${a.id}\\n {4}tenantId: default\\n {4}name: alpha\\n`));

      const wide = await cli(['get', 'agents', '-o', 'wide', '-l', `team=web,suite=${suite}`]);
      const wideLines = wide.stdout.trimEnd().split('\n');
      expect(wideLines).toHaveLength(2);
      expect(wideLines[0]).toMatch(/ IMAGE +CPU +MEMORY +EXIT$/);
      expect(wideLines[1]).toMatch(/^beta .* agent-platform\/busybox:latest +100m +128Mi +3$/);

      const running = await cli(['get', 'agents', '--phase', 'Running', '-l', `suite=${suite}`, '-o', 'name']);
      expect(running.stdout).toBe('agent/alpha\n');
      const failed = await cli(['get', 'agents', '--phase', 'Failed,Succeeded', '-l', `suite=${suite}`, '-o', 'name']);
      expect(failed.stdout).toBe('agent/beta\n');
    }, 60_000);

    it('gets one agent by name or by id, as the object itself', async () => {
      const a = await createAgent('gamma', 'command: ["true"]\n');
      await untilPhase(a.id, 'Succeeded');
      const byName = await cli(['get', 'agent', 'gamma', '-o', 'json']);
      expect(byName.code).toBe(0);
      expect(JSON.parse(byName.stdout)).toEqual(await apiAgent(a.id));
      const byId = await cli(['get', 'agent', a.id, '-o', 'yaml']);
      expect(byId.stdout).toMatch(new RegExp(`^id: ${a.id}\\ntenantId: default\\nname: gamma\\n`));
      expect(byId.stdout).toMatch(/^ {2}phase: Succeeded$/m);
    }, 30_000);

    it('pages with nextCursor: the server cuts pages at limit, the client follows the cursor', async () => {
      // agentctl has no --limit flag (it asks for 500 per page), so the page walk is
      // checked with the CLI's own client and a small limit; the CLI then lists the same set.
      const suite = `page-${runId}`;
      const docs = [0, 1, 2, 3, 4].map((i) => `name: page-${i}\nimage: ${BUSYBOX_IMAGE}\ncommand: ["true"]\nlabels: {suite: ${suite}}\n`).join('---\n');
      const created = await cli(['create', '-f', '-'], { stdin: docs });
      expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });

      const client = new PlatformClient({ baseUrl: p.url, token: p.token });
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await client.listAgents({ labels: { suite }, limit: 2, cursor });
        pages.push(page.items.map((a) => a.name));
        cursor = page.nextCursor;
      } while (cursor && pages.length < 10);
      expect(pages).toEqual([['page-0', 'page-1'], ['page-2', 'page-3'], ['page-4']]);

      expect((await client.listAllAgents({ labels: { suite } })).map((a) => a.name)).toEqual(['page-0', 'page-1', 'page-2', 'page-3', 'page-4']);
      const res = await cli(['get', 'agents', '-l', `suite=${suite}`, '-o', 'name']);
      expect(res.stdout).toBe('agent/page-0\nagent/page-1\nagent/page-2\nagent/page-3\nagent/page-4\n');
    }, 30_000);

    it('resolves names by listing when the server rejects ?name=', async () => {
      const a = await createAgent('legacy', 'command: ["true"]\n');
      await createAgent('other', 'command: ["true"]\n');
      // FAULT PROXY, not the platform: forwards everything to the real platform except
      // `?name=`, which it refuses with 400 as a server without the filter would.
      const seen: string[] = [];
      const target = new URL(p.url);
      const nameRejectingProxy = createHttpServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        if (new URL(req.url ?? '/', p.url).searchParams.has('name')) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'VALIDATION_FAILED', message: 'unknown query parameter(s): name' } }));
          return;
        }
        const upstream = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        });
        upstream.on('error', () => res.destroy());
        req.pipe(upstream);
      });
      const proxyUrl = await listen(nameRejectingProxy);
      try {
        const res = await cli(['get', 'agent', 'legacy', '-o', 'json'], { env: { AGENTCTL_SERVER: proxyUrl } });
        expect(res.stderr).toBe('');
        expect(res.code).toBe(0);
        expect(JSON.parse(res.stdout).id).toBe(a.id);
        expect(seen).toEqual(['GET /api/v1/agents?name=legacy&limit=500', 'GET /api/v1/agents?limit=500']);
      } finally {
        await shut(nameRejectingProxy);
      }
    });

    it('says when there are no agents', async () => {
      const res = await cli(['get', 'agents', '-l', `suite=none-${runId}`]);
      expect(res).toEqual({ code: 0, stdout: '', stderr: 'No agents found.\n' });
    });

    it('prints the not-found error and exits 1 for an unknown name or id', async () => {
      const res = await cli(['get', 'agent', 'ghost']);
      expect(res).toEqual({ code: 1, stdout: '', stderr: 'Error: agent "ghost" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n' });
      // id-shaped: the server answers 404 for the id, then the name lookup finds nothing
      const byId = await cli(['delete', 'deadbeefdeadbeef']);
      expect(byId).toEqual({ code: 1, stdout: '', stderr: 'Error: agent "deadbeefdeadbeef" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n' });
    });

    it("shows the server's message and code for a wrong token, and hints when none is set", async () => {
      const wrong = await cli(['get', 'agents'], { env: { AGENTCTL_TOKEN: 'wrong-token' } });
      expect(wrong).toEqual({ code: 1, stdout: '', stderr: 'Error: invalid or expired token (UNAUTHENTICATED)\n' });
      const none = await cli(['get', 'agents'], { env: { AGENTCTL_TOKEN: '' } });
      expect(none.code).toBe(1);
      expect(none.stderr).toBe('Error: missing Authorization header; send "Authorization: Bearer <token>"; no token is configured: pass --token or set AGENTCTL_TOKEN (UNAUTHENTICATED)\n');
    });

    it('uses --server and --token over the environment', async () => {
      const port = await closedPort();
      const res = await cli(['get', 'agents', '-l', `suite=none-${runId}`, '--server', p.url, '--token', p.token], {
        env: { AGENTCTL_SERVER: `http://127.0.0.1:${port}`, AGENTCTL_TOKEN: 'wrong-token' },
      });
      expect(res).toEqual({ code: 0, stdout: '', stderr: 'No agents found.\n' });
    });

    it('reports that the server is healthy', async () => {
      const res = await cli(['version']);
      expect(res).toEqual({ code: 0, stdout: `Client Version: v0.1.0\nServer: ${p.url} (healthy)\n`, stderr: '' });
    });
  });

  describe('describe', () => {
    it('shows status, spec and the events the controller recorded', async () => {
      const a = await createAgent('delta', 'command: ["sh", "-c", "exit 2"]\nrestartPolicy: Never\nlabels: {team: ml}\n');
      await untilPhase(a.id, 'Failed');
      const res = await cli(['describe', 'agent', 'delta']);
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/^Name: +delta$/m);
      expect(res.stdout).toMatch(new RegExp(`^ID: +${a.id}$`, 'm'));
      expect(res.stdout).toMatch(/^Labels: +team=ml$/m);
      expect(res.stdout).toMatch(/^ {2}Phase: +Failed$/m);
      expect(res.stdout).toMatch(/^ {2}Reason: +Error$/m);
      expect(res.stdout).toMatch(/^ {2}Message: +exited with code 2$/m);
      expect(res.stdout).toMatch(/^ {2}Node: +local$/m);
      expect(res.stdout).toMatch(/^ {2}Container ID: +[0-9a-f]{12,64}$/m);
      expect(res.stdout).toMatch(/^ {2}Exit Code: +2$/m);
      expect(res.stdout).toMatch(/^ {2}Command: +sh -c exit 2$/m);
      expect(res.stdout).toMatch(/^ {2}Restart Policy: +Never$/m);
      const events = res.stdout.slice(res.stdout.indexOf('Events:'));
      expect(events).toMatch(/Normal +Created +[0-9]+s +agent delta created \(image agent-platform\/busybox:latest\)/);
      expect(events).toMatch(/Normal +Scheduled +[0-9]+s +/);
      expect(events).toMatch(/Warning +Error +[0-9]+s +exited with code 2/);
      expect(events.indexOf('Created')).toBeLessThan(events.indexOf('Scheduled'));
      expect(events.indexOf('Scheduled')).toBeLessThan(events.indexOf('exited with code 2'));
    }, 30_000);
  });

  describe('logs', () => {
    it('prints logs, honours --tail, --timestamps and --since', async () => {
      const a = await createAgent('talker', 'command: ["sh", "-c", "echo one; echo two; echo three"]\n');
      await untilPhase(a.id, 'Succeeded');
      expect(await cli(['logs', 'talker'])).toEqual({ code: 0, stdout: 'one\ntwo\nthree\n', stderr: '' });
      expect((await cli(['logs', 'talker', '--tail', '2'])).stdout).toBe('two\nthree\n');
      expect((await cli(['logs', a.id, '--tail', '1', '--timestamps'])).stdout).toMatch(/^\d{4}-\d\d-\d\dT[0-9:.]+Z three\n$/);
      expect((await cli(['logs', 'talker', '--since', '1h30m'])).stdout).toBe('one\ntwo\nthree\n');
      // a time after the container ended: nothing
      expect((await cli(['logs', 'talker', '--since', new Date(Date.now() + 60_000).toISOString()])).stdout).toBe('');
    }, 30_000);

    it('follows a running agent until its container ends', async () => {
      const a = await createAgent('streamer', 'command: ["sh", "-c", "echo before; sleep 1.5; echo during-1; sleep 1; echo during-2"]\n');
      await untilPhase(a.id, 'Running');
      const started = Date.now();
      const res = await cli(['logs', '-f', 'streamer']);
      const elapsed = Date.now() - started;
      expect(res).toEqual({ code: 0, stdout: 'before\nduring-1\nduring-2\n', stderr: '' });
      // it waited for the later lines rather than printing what existed and leaving
      expect(elapsed).toBeGreaterThanOrEqual(1000);
      const [container] = await p.containersOf(a.id);
      expect((await p.docker.getContainer(container!.Id).inspect()).State.Running).toBe(false);
      expect((await untilPhase(a.id, 'Succeeded')).status.exitCode).toBe(0);
    }, 30_000);

    it('follows right after create: waits for the container to start instead of ending empty', async () => {
      const created = await cli(['create', '-f', '-'], { stdin: `name: eager\nimage: ${BUSYBOX_IMAGE}\ncommand: ["sh", "-c", "echo first; sleep 1; echo last"]\n` });
      expect(created.code, created.stderr).toBe(0);
      // no wait in between: the agent is still Pending when logs -f asks
      const res = await cli(['logs', '-f', 'eager']);
      expect(res).toEqual({ code: 0, stdout: 'first\nlast\n', stderr: '' });
    }, 30_000);

    it('stops following on interrupt and exits 130', async () => {
      const a = await createAgent('endless', 'command: ["sh", "-c", "echo tick; sleep 300"]\n');
      await untilPhase(a.id, 'Running');
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 800).unref();
      const started = Date.now();
      const res = await cli(['logs', '-f', 'endless'], { signal: controller.signal });
      expect(res.code).toBe(130);
      expect(res.stdout).toBe('tick\n');
      expect(Date.now() - started).toBeLessThan(3000);
      expect((await apiAgent(a.id)).status.phase).toBe('Running');
    }, 30_000);
  });

  describe('wait', () => {
    it('exits 0 once the agent reaches the phase', async () => {
      const started = Date.now();
      const a = await createAgent('job-ok', 'command: ["sh", "-c", "sleep 1.5"]\n');
      const res = await cli(['wait', 'job-ok', '--for=phase=Succeeded', '--timeout', '30s']);
      expect(res).toEqual({ code: 0, stdout: 'agent/job-ok condition met (phase Succeeded)\n', stderr: '' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect((await apiAgent(a.id)).status).toMatchObject({ phase: 'Succeeded', exitCode: 0 });
    }, 40_000);

    it('exits 1 with the current phase on timeout', async () => {
      const a = await createAgent('job-slow', SLEEPER);
      await untilPhase(a.id, 'Running');
      const started = Date.now();
      const res = await cli(['wait', 'job-slow', '--for', 'phase=Succeeded', '--timeout', '1s']);
      const elapsed = Date.now() - started;
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('Error: timed out after 1s waiting for agent "job-slow" to be phase Succeeded; it is Running (reason Started) (WAIT_TIMEOUT)\n');
      expect(elapsed).toBeGreaterThanOrEqual(950);
      expect(elapsed).toBeLessThan(3000);
    }, 30_000);

    it('exits 1 early with phase, reason, exit code and message when the agent fails instead', async () => {
      await createAgent('job-bad', 'command: ["sh", "-c", "echo bad >&2; exit 3"]\n');
      const started = Date.now();
      const res = await cli(['wait', 'job-bad', '--for=phase=Succeeded', '--timeout', '60s']);
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('Error: agent "job-bad" is Failed (reason Error, exit code 3, message: exited with code 3), not Succeeded (WAIT_CONDITION_UNREACHABLE)\n');
      expect(Date.now() - started).toBeLessThan(30_000);
    }, 40_000);

    it('waits for deletion', async () => {
      const a = await createAgent('job-gone', SLEEPER);
      await untilPhase(a.id, 'Running');
      const waiting = cli(['wait', 'job-gone', '--for=delete', '--timeout', '30s']);
      await sleep(300);
      const del = await api('DELETE', `/api/v1/agents/${a.id}`);
      expect([200, 202]).toContain(del.status);
      expect(await waiting).toEqual({ code: 0, stdout: 'agent/job-gone condition met (deleted)\n', stderr: '' });
      expect(await p.containersOf(a.id)).toHaveLength(0);
    }, 40_000);
  });

  describe('stop, start, delete', () => {
    it('stops and starts by name and id; the container really stops and runs again', async () => {
      // traps SIGTERM so the stop is clean rather than a kill after the grace period
      const a = await createAgent('toggle', 'command: ["sh", "-c", "trap \'exit 0\' TERM; while true; do sleep 0.2; done"]\n');
      await untilPhase(a.id, 'Running');

      expect(await cli(['stop', 'toggle'])).toEqual({ code: 0, stdout: 'agent/toggle stop requested (phase: Running)\n', stderr: '' });
      expect((await apiAgent(a.id)).desiredState).toBe('stopped');
      const stopped = await untilPhase(a.id, 'Stopped');
      expect(stopped.status.reason).toBe('Stopped');
      for (const c of await p.containersOf(a.id)) expect(c.State).not.toBe('running');

      expect(await cli(['start', a.id])).toEqual({ code: 0, stdout: 'agent/toggle start requested (phase: Pending)\n', stderr: '' });
      expect((await apiAgent(a.id)).desiredState).toBe('running');
      await untilPhase(a.id, 'Running');
      expect((await p.containersOf(a.id)).map((c) => c.State)).toContain('running');

      const reasons = (await api<{ items: EventJson[] }>('GET', `/api/v1/agents/${a.id}/events`)).json.items.map((e) => e.reason);
      for (const r of ['StopRequested', 'Stopped', 'StartRequested']) expect(reasons, reasons.join(',')).toContain(r);
    }, 60_000);

    it('deletes several agents, removing their containers, and fails for the missing one', async () => {
      const a = await createAgent('old-1', 'command: ["true"]\n');
      const b = await createAgent('old-2', SLEEPER);
      await untilPhase(a.id, 'Succeeded');
      await untilPhase(b.id, 'Running');
      expect(await p.containersOf(b.id)).toHaveLength(1);

      const res = await cli(['delete', 'agent', 'old-1', 'missing', 'old-2']);
      expect(res.code).toBe(1);
      // the server waits for the container to go before answering, so both report "deleted"
      expect(res.stdout).toBe('agent "old-1" deleted\nagent "old-2" deleted\n');
      expect(res.stderr).toBe('Error: agent "missing" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n');
      expect(await p.containersOf(a.id)).toHaveLength(0);
      expect(await p.containersOf(b.id)).toHaveLength(0);
      expect((await api('GET', `/api/v1/agents/${b.id}`)).status).toBe(404);
      const after = await cli(['get', 'agent', 'old-1']);
      expect(after).toMatchObject({ code: 1, stderr: expect.stringMatching(/AGENT_NOT_FOUND/) });
    }, 60_000);
  });

  describe('as a process', () => {
    const tsxMain = ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts')];
    const env = (): NodeJS.ProcessEnv => ({ ...process.env, HOME: p.dir, AGENTCTL_SERVER: p.url, AGENTCTL_TOKEN: p.token, AGENTCTL_CONFIG: '' });

    it('writes the table to stdout and exits 0', async () => {
      await createAgent('proc', `command: ["true"]\nlabels: {suite: proc-${runId}}\n`);
      const { stdout, stderr } = await execFileAsync(process.execPath, [...tsxMain, 'get', 'agents', '-l', `suite=proc-${runId}`], { env: env(), cwd: repoRoot });
      expect(stderr).toBe('');
      expect(stdout).toMatch(/^NAME .*\nproc +[a-z0-9]+ +\w+ /);
    }, 30_000);

    it('exits 1 with the error on stderr', async () => {
      const err = (await execFileAsync(process.execPath, [...tsxMain, 'get', 'agent', 'nobody'], { env: env(), cwd: repoRoot }).catch((e: unknown) => e)) as { code: number; stderr: string; stdout: string };
      expect(err.code).toBe(1);
      expect(err.stdout).toBe('');
      expect(err.stderr).toBe('Error: agent "nobody" not found (looked up by id and by name) (AGENT_NOT_FOUND)\n');
    }, 30_000);

    it('reads server and token from the config file', async () => {
      await createAgent('from-config', `command: ["true"]\nlabels: {suite: cfg-${runId}}\n`);
      const config = join(p.dir, 'config.yaml');
      await writeFile(config, `server: ${p.url}\ntoken: ${p.token}\n`);
      const { stdout } = await execFileAsync(process.execPath, [...tsxMain, 'get', 'agents', '-l', `suite=cfg-${runId}`, '-o', 'name'], {
        env: { ...process.env, HOME: p.dir, AGENTCTL_CONFIG: config, AGENTCTL_SERVER: '', AGENT_PLATFORM_URL: '', AGENTCTL_TOKEN: '', AGENT_PLATFORM_ADMIN_TOKEN: '' },
        cwd: repoRoot,
      });
      expect(stdout).toBe('agent/from-config\n');
    }, 30_000);
  });
});
