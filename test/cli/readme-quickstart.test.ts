/**
 * The README's quick start, run as written against the real platform (buildPlatform, SQLite,
 * the local dockerd, the agent-samples/simple-python image): the shell commands of both
 * blocks are read from README.md and run by bash from the repository root, with only
 * `localhost:8080` pointed at the test platform's port. The curl block runs with curl and
 * node (how it extracts `$ID`), the agentctl block as `npx agentctl ...`, which runs the
 * built bin (dist/, which `make test` builds first). So the README cannot drift away from
 * what works without this test failing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AgentJson, EventJson } from '../../src/cli/api-types.js';
import { requireDocker } from '../helpers/require-docker.js';
import { REPO_ROOT as repoRoot, requireFreshDist } from './built-dist.js';
import { RealPlatform, requireImage } from './real-platform.js';

const execFileAsync = promisify(execFile);
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

/** The ```sh blocks of the section. */
const shellBlocks = (section: string): string[] => [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** The commands of a shell block: lines continued with a trailing backslash joined, blank lines dropped. */
function shellCommands(block: string): string[] {
  const commands: string[] = [];
  let pending = '';
  for (const line of block.split('\n')) {
    if (line.endsWith('\\')) {
      pending += `${line}\n`;
      continue;
    }
    const command = pending + line;
    pending = '';
    if (command.trim() !== '') commands.push(command);
  }
  return commands;
}

/** The `npx agentctl ...` lines of the README's agentctl shell block. */
function agentctlLines(section: string): string[] {
  const block = shellBlocks(section).find((b) => /^npx agentctl /m.test(b));
  expect(block, 'README quick start has an `npx agentctl` shell block').toBeDefined();
  return shellCommands(block!).map((l) => l.trim());
}

interface ShellResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `bash -c script` from the repository root; never rejects on a non-zero exit. */
async function bash(script: string, env: NodeJS.ProcessEnv, timeoutMs = 90_000): Promise<ShellResult> {
  try {
    const { stdout, stderr } = await execFileAsync('bash', ['-c', script], { env, cwd: repoRoot, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
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

  /** Checks beside the README's own commands, straight over HTTP with the admin token. */
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

  /** A user's shell after `export AGENT_PLATFORM_ADMIN_TOKEN=...`, with no agentctl settings of this machine. */
  const userEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    ...process.env,
    HOME: p.dir,
    XDG_CONFIG_HOME: '',
    AGENT_PLATFORM_ADMIN_TOKEN: p.token,
    AGENTCTL_SERVER: '',
    AGENTCTL_TOKEN: '',
    AGENTCTL_CONFIG: '',
    AGENT_PLATFORM_URL: '',
    ...extra,
  });

  /** The README's commands aimed at this platform: only `localhost:8080` changes. */
  const atTestPort = (command: string): string => command.replaceAll('localhost:8080', new URL(p.url).host);

  it('curl flow, run by bash as written: 201 Pending and $ID set, then Running and Succeeded with exit code 0, logs "Hello Agent", delete removes container and record', async () => {
    const section = await quickStartSection();
    const body = curlCreateBody(section);
    expect(body).toMatchObject({ name: 'hello', image: PYTHON_IMAGE });

    const block = shellBlocks(section).find((b) => b.includes('curl '));
    expect(block, 'README quick start has a curl shell block').toBeDefined();
    const commands = shellCommands(block!);
    // The shape the steps below rely on: create (setting $AGENT), show it, set $ID, then GET, logs, DELETE.
    expect(commands, commands.join('\n---\n')).toHaveLength(6);
    const [create, show, setId, get, logs, del] = commands as [string, string, string, string, string, string];
    expect(create).toMatch(/^AGENT=\$\(curl .*-X POST localhost:8080\/api\/v1\/agents/s);
    expect(show).toMatch(/^echo "\$AGENT"/);
    expect(setId).toMatch(/^ID=\$\(/);
    expect(get).toMatch(/ localhost:8080\/api\/v1\/agents\/\$ID +#/);
    expect(logs).toMatch(/ localhost:8080\/api\/v1\/agents\/\$ID\/logs +#/);
    expect(del).toMatch(/-X DELETE localhost:8080\/api\/v1\/agents\/\$ID$/);
    for (const c of [create, get, logs, del]) expect(c, 'every curl sends the admin token from the environment').toContain('-H "Authorization: Bearer $AGENT_PLATFORM_ADMIN_TOKEN"');

    // The first three lines in one shell, as a user pastes them; then print the $ID they set.
    const created = await bash(['set -eu', ...[create, show, setId].map(atTestPort), 'printf "ID=%s\\n" "$ID"'].join('\n'), userEnv());
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toBe('');
    const [shown, idLine] = created.stdout.trimEnd().split('\n');
    const agent = JSON.parse(shown!) as AgentJson;
    expect(agent.status.phase).toBe('Pending');
    expect(agent.id).toMatch(/^[a-z0-9]{8,40}$/);
    expect(idLine).toBe(`ID=${agent.id}`);
    const id = agent.id;

    // "Running, then Succeeded, exitCode 0": re-run the README's GET line as a user would.
    const phases: string[] = [];
    let last: AgentJson;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await bash(atTestPort(get), userEnv({ ID: id }));
      expect(res.code, res.stderr).toBe(0);
      last = JSON.parse(res.stdout) as AgentJson;
      expect(last.id).toBe(id);
      if (phases.at(-1) !== last.status.phase) phases.push(last.status.phase);
      if (last.status.phase === 'Succeeded' || last.status.phase === 'Failed') break;
      if (Date.now() > deadline) throw new Error(`not finished after 60 s; phases ${phases.join(' -> ')}; status ${JSON.stringify(last.status)}`);
      await sleep(100);
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

    const printed = await bash(atTestPort(logs), userEnv({ ID: id }));
    expect(printed).toEqual({ code: 0, stdout: 'Hello Agent\n', stderr: '' });

    expect(await p.containersOf(id)).toHaveLength(1);
    const deleted = await bash(atTestPort(del), userEnv({ ID: id }));
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ id, deleted: true });
    expect((await curl('GET', `/api/v1/agents/${id}`)).status).toBe(404);
    expect(await p.containersOf(id)).toHaveLength(0);
  }, 90_000);

  it('agentctl flow, run by bash as written (npx agentctl): create -f the sample manifest, get, wait Succeeded, logs "Hello Agent", delete', async () => {
    // npx agentctl runs bin/agentctl.js, which loads dist/.
    await requireFreshDist();
    const lines = agentctlLines(await quickStartSection());
    expect(lines).toEqual([
      'npx agentctl create -f agent-samples/simple-python/agent.yaml',
      'npx agentctl get agents',
      'npx agentctl wait hello --for=phase=Succeeded --timeout 60s',
      'npx agentctl logs hello',
      'npx agentctl delete hello',
    ]);
    // As the README says: agentctl reads AGENT_PLATFORM_ADMIN_TOKEN; only the server differs.
    const env = userEnv({ AGENT_PLATFORM_URL: p.url });
    const [create, get, wait, logs, del] = lines as [string, string, string, string, string];

    const created = await bash(create, env);
    expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });
    const id = /^agent\/hello created \(id ([a-z0-9]+)\)\n$/.exec(created.stdout)?.[1];
    expect(id, created.stdout).toBeDefined();
    const agent = (await curl('GET', `/api/v1/agents/${id}`)).json as AgentJson;
    expect(agent).toMatchObject({ name: 'hello', spec: { image: PYTHON_IMAGE, command: ['python3', '/app/agent.py'], resources: { cpuMillicores: 100, memoryMiB: 128 } } });

    const listed = await bash(get, env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^NAME +ID +PHASE +REASON +NODE +RESTARTS +AGE\n/);
    expect(listed.stdout).toMatch(new RegExp(`\\nhello +${id} +(Pending|Starting|Running|Succeeded) +`));

    const waited = await bash(wait, env);
    expect(waited, waited.stderr).toEqual({ code: 0, stdout: 'agent/hello condition met (phase Succeeded)\n', stderr: '' });
    expect(((await curl('GET', `/api/v1/agents/${id}`)).json as AgentJson).status).toMatchObject({ phase: 'Succeeded', exitCode: 0 });

    const printed = await bash(logs, env);
    expect(printed.code, printed.stderr).toBe(0);
    const logLines = printed.stdout.split('\n');
    expect(logLines[0]).toBe('Hello Agent');
    // the sample's own report: proof it is agent.py from the image, run as the locked-down user
    expect(printed.stdout).toMatch(/^python 3\.\d+\.\d+ uid=1000 gid=1000 /m);

    expect(await p.containersOf(id!)).toHaveLength(1);
    const deleted = await bash(del, env);
    expect(deleted).toEqual({ code: 0, stdout: 'agent "hello" deleted\n', stderr: '' });
    expect((await curl('GET', `/api/v1/agents/${id}`)).status).toBe(404);
    expect(await p.containersOf(id!)).toHaveLength(0);
  }, 120_000);
});
