/**
 * The shipped entry points as a user runs them: `node bin/agentctl.js`, which loads the
 * compiled dist/ (not src/ through tsx as the other agentctl tests do), against the real
 * platform (buildPlatform in-process, SQLite, the local dockerd). A broken bin, a missing
 * file in the build or an import that only works under tsx fails here.
 *
 * Also the one thing in-process runs cannot show: the `wait` spinner on a real terminal,
 * under a pseudo-terminal from `script` (util-linux/bsdutils, on every Debian).
 */
import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentJson } from '../../src/cli/api-types.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { REPO_ROOT, requireFreshDist } from './built-dist.js';
import { RealPlatform } from './real-platform.js';

const execFileAsync = promisify(execFile);
const AGENTCTL_BIN = join(REPO_ROOT, 'bin/agentctl.js');
const PLATFORM_BIN = join(REPO_ROOT, 'bin/agent-platform.js');

// Throws when CI=true and dockerd is missing, so the file fails instead of skipping.
const hasDocker = await requireDocker();

interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node <bin> ...args`; never rejects on a non-zero exit (the code is the result). */
async function runNode(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<ProcessResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, args, { env, cwd: REPO_ROOT, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** Single-quotes one word for sh. */
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

describe.skipIf(!hasDocker)('the built bins (bin/agentctl.js, bin/agent-platform.js)', () => {
  let p: RealPlatform;
  let busybox: string;

  beforeAll(async () => {
    await requireFreshDist();
    busybox = await ensureBusyboxImage();
    p = await RealPlatform.start();
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  }, 60_000);

  /** The environment of a user with only AGENTCTL_SERVER/TOKEN set (no config file of this machine leaks in). */
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    ...process.env,
    HOME: p.dir,
    XDG_CONFIG_HOME: '',
    AGENTCTL_CONFIG: '',
    AGENT_PLATFORM_URL: '',
    AGENT_PLATFORM_ADMIN_TOKEN: '',
    AGENTCTL_SERVER: p.url,
    AGENTCTL_TOKEN: p.token,
    ...extra,
  });

  it('agentctl create, get agents (table and JSON) and a failing get, through node bin/agentctl.js', async () => {
    const manifest = join(p.dir, 'bin-agent.yaml');
    await writeFile(manifest, `name: bin-agent\nimage: ${busybox}\ncommand: ["sh", "-c", "echo from-bin"]\nlabels: {suite: bin}\n`);

    const created = await runNode([AGENTCTL_BIN, 'create', '-f', manifest], env());
    expect(created, created.stderr).toMatchObject({ code: 0, stderr: '' });
    const id = /^agent\/bin-agent created \(id ([a-z0-9]+)\)\n$/.exec(created.stdout)?.[1];
    expect(id, created.stdout).toBeDefined();

    const table = await runNode([AGENTCTL_BIN, 'get', 'agents'], env());
    expect(table, table.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(table.stdout).toMatch(/^NAME +ID +PHASE +REASON +NODE +RESTARTS +AGE\n/);
    expect(table.stdout).toMatch(new RegExp(`\\nbin-agent +${id} +(Pending|Starting|Running|Succeeded) +`));

    const json = await runNode([AGENTCTL_BIN, 'get', 'agents', '-l', 'suite=bin', '-o', 'json'], env());
    expect(json.code, json.stderr).toBe(0);
    const items = (JSON.parse(json.stdout) as { items: AgentJson[] }).items;
    expect(items.map((a) => [a.id, a.name])).toEqual([[id, 'bin-agent']]);

    // A failure: non-zero exit, the server's message and code on stderr, nothing on stdout.
    const wrongToken = await runNode([AGENTCTL_BIN, 'get', 'agents'], env({ AGENTCTL_TOKEN: 'not-the-token-at-all' }));
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stdout).toBe('');
    expect(wrongToken.stderr).toMatch(/invalid or expired token.*\(UNAUTHENTICATED\)/);

    const waited = await runNode([AGENTCTL_BIN, 'wait', 'bin-agent', '--for=phase=Succeeded', '--timeout', '60s'], env());
    expect(waited).toEqual({ code: 0, stdout: 'agent/bin-agent condition met (phase Succeeded)\n', stderr: '' });
    const logs = await runNode([AGENTCTL_BIN, 'logs', 'bin-agent'], env());
    expect(logs).toEqual({ code: 0, stdout: 'from-bin\n', stderr: '' });
    const deleted = await runNode([AGENTCTL_BIN, 'delete', 'bin-agent'], env());
    expect(deleted).toEqual({ code: 0, stdout: 'agent "bin-agent" deleted\n', stderr: '' });
    expect(await p.containersOf(id!)).toHaveLength(0);
  }, 120_000);

  it('bin/agent-platform.js loads the build and offers `serve`', async () => {
    const help = await runNode([PLATFORM_BIN, '--help'], env());
    expect(help, help.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^Usage: agent-platform /);
    expect(help.stdout).toMatch(/\n +serve +start the API server/);
  }, 60_000);

  it('wait draws a spinner on a terminal and clears it before the result line', async () => {
    const name = 'spin-agent';
    const manifest = join(p.dir, 'spin-agent.yaml');
    await writeFile(manifest, `name: ${name}\nimage: ${busybox}\ncommand: ["sh", "-c", "sleep 2"]\n`);
    expect((await runNode([AGENTCTL_BIN, 'create', '-f', manifest], env())).code).toBe(0);

    // `script -qec CMD /dev/null`: CMD runs on a new pseudo-terminal (stdout and stderr
    // both the terminal), its output is copied to our pipe, and -e passes its exit code.
    const cmd = [process.execPath, AGENTCTL_BIN, 'wait', name, '--for=phase=Succeeded', '--timeout', '60s'].map(shellQuote).join(' ');
    const result = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: env({ TERM: 'xterm' }), cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
      child.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
    expect(result.code, result.out).toBe(0);

    // Each draw returns to column 0, erases the line and writes a braille frame and the text.
    const CLEAR = '\r\x1b[2K';
    const draws = [...result.out.matchAll(/\r\x1b\[2K([\u2800-\u28ff]) waiting for agent\/spin-agent to be phase Succeeded/g)];
    // About 2 s of waiting at one frame per 100 ms: well over 3 draws, with the frame changing.
    expect(draws.length, JSON.stringify(result.out)).toBeGreaterThanOrEqual(3);
    expect(new Set(draws.map((m) => m[1])).size).toBeGreaterThanOrEqual(2);
    // The text follows the agent: the phase seen while waiting is shown.
    expect(result.out).toMatch(/waiting for agent\/spin-agent to be phase Succeeded: phase (Pending|Starting|Running)/);
    // Cleared, then the result on a clean line, and nothing after it (the terminal turns \n into \r\n).
    const afterLastDraw = result.out.slice(draws.at(-1)!.index);
    expect(afterLastDraw).toMatch(/^\r\x1b\[2K[\u2800-\u28ff] [^\r\n\x1b]*\r\x1b\[2Kagent\/spin-agent condition met \(phase Succeeded\)\r?\n$/);
    expect(result.out.endsWith(`${CLEAR}agent/spin-agent condition met (phase Succeeded)\r\n`), JSON.stringify(result.out.slice(-200))).toBe(true);

    // Not a terminal: the same wait writes no spinner at all (pipes and CI logs stay clean).
    const piped = await runNode([AGENTCTL_BIN, 'wait', name, '--for=phase=Succeeded', '--timeout', '10s'], env());
    expect(piped).toEqual({ code: 0, stdout: `agent/${name} condition met (phase Succeeded)\n`, stderr: '' });
    expect((await runNode([AGENTCTL_BIN, 'delete', name], env())).code).toBe(0);
  }, 120_000);
});
