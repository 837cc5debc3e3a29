/**
 * The README's quick start, run as written against the real platform (buildPlatform, SQLite,
 * the local dockerd, the agent-samples/simple-python image): first the curl flow (as fetch
 * calls with the same method, path, headers and body), then the agentctl flow as a process
 * from the repository root, so `-f agent-samples/simple-python/agent.yaml` is the real file.
 * The curl body and the agentctl lines are read from README.md, so the README cannot drift
 * away from what works without this test failing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { AgentJson, EventJson } from '../../src/cli/api-types.js';
import { requireDocker } from '../helpers/require-docker.js';
import { RealPlatform, requireImage } from './real-platform.js';

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const PYTHON_IMAGE = 'agent-samples/simple-python:latest';

// Throws when CI=true and dockerd is missing, so the file fails instead of skipping.
const hasDocker = await requireDocker();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The "## Quick start" section of README.md. */
async function quickStartSection(): Promise<string> {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const start = readme.indexOf('## Quick start');
  expect(start, 'README.md has a "## Quick start" section').toBeGreaterThanOrEqual(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

/** The JSON body of the README's `curl ... -X POST .../api/v1/agents -d '...'`. */
function curlCreateBody(section: string): Record<string, unknown> {
  const m = /-X POST localhost:8080\/api\/v1\/agents \\\n\s*-d '([^']+)'/.exec(section);
  expect(m, 'README quick start has the curl POST with -d body').not.toBeNull();
  return JSON.parse(m![1]!) as Record<string, unknown>;
}

/** The `agentctl ...` lines of the README's second shell block. */
function agentctlLines(section: string): string[][] {
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((b) => /^agentctl /m.test(b));
  expect(block, 'README quick start has an agentctl shell block').toBeDefined();
  return block!
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('agentctl '))
    .map((l) => l.split(/\s+/).slice(1));
}

describe.skipIf(!hasDocker)('README quick start against the real platform', () => {
  let p: RealPlatform;

  beforeAll(async () => {
    p = await RealPlatform.start();
    await requireImage(p.docker, PYTHON_IMAGE);
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 60_000);

  /** What `curl -H "Authorization: Bearer $AGENT_PLATFORM_ADMIN_TOKEN" ...` sends. */
  async function curl(method: string, path: string, body?: string): Promise<{ status: number; text: string; json: unknown }> {
    const headers: Record<string, string> = { authorization: `Bearer ${p.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(p.url + path, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json };
  }

  it('curl flow: 201 Pending, then Running and Succeeded with exit code 0, logs "Hello Agent", delete removes container and record', async () => {
    const body = curlCreateBody(await quickStartSection());
    expect(body).toMatchObject({ name: 'hello', image: PYTHON_IMAGE });

    const created = await curl('POST', '/api/v1/agents', JSON.stringify(body));
    expect(created.status, created.text).toBe(201);
    const agent = created.json as AgentJson;
    expect(agent.id).toMatch(/^[a-z0-9]{8,40}$/);
    expect(agent.status.phase).toBe('Pending');
    const id = agent.id;

    // "Running, then Succeeded, exitCode 0": poll GET as a user re-running curl would.
    const phases: string[] = [];
    let last: AgentJson;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await curl('GET', `/api/v1/agents/${id}`);
      expect(res.status, res.text).toBe(200);
      last = res.json as AgentJson;
      if (phases.at(-1) !== last.status.phase) phases.push(last.status.phase);
      if (last.status.phase === 'Succeeded' || last.status.phase === 'Failed') break;
      if (Date.now() > deadline) throw new Error(`not finished after 60 s; phases ${phases.join(' -> ')}; status ${JSON.stringify(last.status)}`);
      await sleep(50);
    }
    expect(last.status, `phases ${phases.join(' -> ')}`).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
    // The POST answer above is Pending; by the first GET the controller may already be past it.
    expect(['Pending', 'Starting', 'Running', 'Succeeded']).toContain(phases[0]);
    // A one-line print can finish between two polls; the Started event proves it was Running.
    const events = (await curl('GET', `/api/v1/agents/${id}/events`)).json as { items: EventJson[] };
    const reasons = events.items.map((e) => e.reason);
    expect(reasons, reasons.join(',')).toContain('Started');
    expect(reasons.indexOf('Started')).toBeLessThan(reasons.indexOf('Completed'));
    expect(last.status.startedAt).toBeDefined();

    const logs = await curl('GET', `/api/v1/agents/${id}/logs`);
    expect(logs.status).toBe(200);
    expect(logs.text).toBe('Hello Agent\n');

    expect(await p.containersOf(id)).toHaveLength(1);
    const del = await curl('DELETE', `/api/v1/agents/${id}`);
    expect(del.status, del.text).toBe(200);
    expect(del.json).toEqual({ id, deleted: true });
    expect((await curl('GET', `/api/v1/agents/${id}`)).status).toBe(404);
    expect(await p.containersOf(id)).toHaveLength(0);
  }, 90_000);

  it('agentctl flow: create -f the sample manifest, get, wait Succeeded, logs "Hello Agent", delete', async () => {
    const lines = agentctlLines(await quickStartSection());
    expect(lines).toEqual([
      ['create', '-f', 'agent-samples/simple-python/agent.yaml'],
      ['get', 'agents'],
      ['wait', 'hello', '--for=phase=Succeeded', '--timeout', '60s'],
      ['logs', 'hello'],
      ['delete', 'hello'],
    ]);
    // As the README says: agentctl reads AGENT_PLATFORM_ADMIN_TOKEN; only the port differs.
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: p.dir, AGENT_PLATFORM_ADMIN_TOKEN: p.token, AGENT_PLATFORM_URL: p.url, AGENTCTL_SERVER: '', AGENTCTL_TOKEN: '', AGENTCTL_CONFIG: '' };
    const agentctl = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], { env, cwd: repoRoot, timeout: 90_000 });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
      }
    };
    const [create, get, wait, logs, del] = lines as [string[], string[], string[], string[], string[]];

    const created = await agentctl(create);
    expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });
    const id = /^agent\/hello created \(id ([a-z0-9]+)\)\n$/.exec(created.stdout)?.[1];
    expect(id, created.stdout).toBeDefined();
    const agent = (await curl('GET', `/api/v1/agents/${id}`)).json as AgentJson;
    expect(agent).toMatchObject({ name: 'hello', spec: { image: PYTHON_IMAGE, command: ['python3', '/app/agent.py'], resources: { cpuMillicores: 100, memoryMiB: 128 } } });

    const listed = await agentctl(get);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^NAME +ID +PHASE +REASON +NODE +RESTARTS +AGE\n/);
    expect(listed.stdout).toMatch(new RegExp(`\\nhello +${id} +(Pending|Starting|Running|Succeeded) +`));

    const waited = await agentctl(wait);
    expect(waited, waited.stderr).toEqual({ code: 0, stdout: 'agent/hello condition met (phase Succeeded)\n', stderr: '' });
    expect(((await curl('GET', `/api/v1/agents/${id}`)).json as AgentJson).status).toMatchObject({ phase: 'Succeeded', exitCode: 0 });

    const printed = await agentctl(logs);
    expect(printed.code, printed.stderr).toBe(0);
    const logLines = printed.stdout.split('\n');
    expect(logLines[0]).toBe('Hello Agent');
    // the sample's own report: proof it is agent.py from the image, run as the locked-down user
    expect(printed.stdout).toMatch(/^python 3\.\d+\.\d+ uid=1000 gid=1000 /m);

    expect(await p.containersOf(id!)).toHaveLength(1);
    const deleted = await agentctl(del);
    expect(deleted).toEqual({ code: 0, stdout: 'agent "hello" deleted\n', stderr: '' });
    expect((await curl('GET', `/api/v1/agents/${id}`)).status).toBe(404);
    expect(await p.containersOf(id!)).toHaveLength(0);
  }, 120_000);
});
