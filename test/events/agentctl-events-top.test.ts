/**
 * `agentctl events` and `agentctl top` against the real platform: buildPlatform in-process
 * (SQLite in a temp dir, controller, scheduler, usage sampler reading the containers'
 * cgroups) with the local dockerd as node "local" and busybox agents. agentctl runs
 * in-process through the same `run()` the binary calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/agentctl.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { requireDocker } from '../helpers/require-docker.js';
import { EventsPlatform, sleep, uniqueName } from './events-platform.js';

const hasDocker = await requireDocker();

/** Splits a kubectl-style table into rows of cells (columns are separated by 3+ spaces). */
const tableRows = (text: string): string[][] =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/ {3,}/));

describe.skipIf(!hasDocker).sequential('agentctl events and top on real Docker', () => {
  let p: EventsPlatform;
  let image = '';

  beforeAll(async () => {
    image = await ensureBusyboxImage();
    p = await EventsPlatform.start({ nodes: 'docker', env: { AGENT_PLATFORM_USAGE_INTERVAL_MS: '300' } });
  });

  afterAll(async () => {
    await p?.close();
  });

  it('events lists an agent\'s events oldest first as TIME TYPE REASON OBJECT MESSAGE', async () => {
    const name = uniqueName('ev');
    const a = await p.create({ name, image, command: ['sh', '-c', 'exit 2'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Error', 30_000);
    const res = await p.cli(['events', '--agent', name]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const [header, ...rows] = tableRows(res.stdout);
    expect(header).toEqual(['TIME', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']);
    const stored = await p.events(`?agent=${a.id}`);
    expect(rows.map((r) => r[2])).toEqual(stored.map((e) => e.reason));
    expect(rows.map((r) => r[2])).toEqual(expect.arrayContaining(['Created', 'Scheduled', 'Started', 'Error']));
    for (const [i, r] of rows.entries()) {
      expect(r[0]).toBe(stored[i]!.time.replace(/\.\d{3}Z$/, 'Z'));
      expect(r[1]).toBe(stored[i]!.type);
      expect(r[3]).toBe(`agent/${name}`);
      expect(r[4]).toBe(stored[i]!.message);
    }
    expect(rows.find((r) => r[2] === 'Error')).toEqual([expect.any(String), 'Warning', 'Error', `agent/${name}`, 'exited with code 2']);
    // By id works the same.
    expect((await p.cli(['events', '--agent', a.id])).stdout).toBe(res.stdout);
  });

  it('events filters by node and since, prints JSON lines with -o json, and rejects bad flags', async () => {
    const node = await p.cli(['events', '--node', 'local']);
    expect(node.code).toBe(0);
    const nodeRows = tableRows(node.stdout).slice(1);
    expect(nodeRows.length).toBeGreaterThan(0);
    expect(nodeRows.every((r) => r[3] === 'node/local')).toBe(true);
    expect(nodeRows.map((r) => r[2])).toContain('NodeReady');

    const everything = await p.cli(['events']);
    expect(everything.stdout).toContain('node/local');
    expect(everything.stdout).toMatch(/agent\/ev-/);

    const name = uniqueName('since');
    const a = await p.create({ name, image, command: ['true'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Completed', 30_000);
    await sleep(2_100);
    const quiet = await p.cli(['events', '--agent', name, '--since', '2s']);
    expect(quiet).toMatchObject({ code: 0, stdout: '', stderr: 'No events found.\n' });
    const recent = await p.cli(['events', '--agent', name, '--since', '1m']);
    expect(tableRows(recent.stdout).length).toBeGreaterThanOrEqual(5);

    const json = await p.cli(['events', '--agent', name, '-o', 'json']);
    expect(json.code).toBe(0);
    const lines = json.stdout.trimEnd().split('\n');
    const parsed = lines.map((l) => JSON.parse(l) as { id: number; objectId: string; reason: string });
    expect(parsed.map((e) => e.id)).toEqual((await p.events(`?agent=${a.id}`)).map((e) => e.id));
    expect(parsed.every((e) => e.objectId === a.id)).toBe(true);

    expect(await p.cli(['events', '--since', 'yesterday'])).toMatchObject({ code: 1, stderr: expect.stringContaining('--since') });
    expect(await p.cli(['events', '-o', 'yaml'])).toMatchObject({ code: 1, stderr: expect.stringContaining('use table or json') });
    expect(await p.cli(['events', '--agent', 'no-such-agent'])).toMatchObject({ code: 1, stderr: expect.stringContaining('not found') });
  });

  it('events --watch prints new events as they happen until Ctrl-C, each once', async () => {
    const name = uniqueName('watch');
    const a = await p.create({ name, image, command: ['sh', '-c', 'sleep 60'] });
    await p.waitForEvent(`?agent=${a.id}`, (e) => e.reason === 'Started', 30_000);
    const out: string[] = [];
    const jsonOut: string[] = [];
    const sink = (to: string[]) => ({ write: (c: string | Uint8Array) => (to.push(String(c)), true), isTTY: false });
    const env = { HOME: '/nonexistent', AGENTCTL_SERVER: p.baseUrl, AGENTCTL_TOKEN: p.token };
    const ctrlC = new AbortController();
    const watching = run(['events', '--watch', '--agent', name], { stdout: sink(out), stderr: sink([]), env, signal: ctrlC.signal });
    const watchingJson = run(['events', '-w', '--agent', name, '-o', 'json'], { stdout: sink(jsonOut), stderr: sink([]), env, signal: ctrlC.signal });
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output so far:\n${out.join('')}`);
        await sleep(50);
      }
    };
    // The existing events first...
    await until(() => out.join('').includes('Started') && jsonOut.join('').includes('"Started"'), 'the listed events');
    expect(out.join('')).not.toContain('StopRequested');
    // ...then live ones, including transient phase changes.
    await p.expect(200, 'POST', `/api/v1/agents/${a.id}/stop`);
    await until(() => out.join('').includes('StopRequested') && out.join('').includes('Running -> Stopping'), 'live events');
    await until(() => jsonOut.join('').includes('"StopRequested"'), 'live JSON events');
    await p.waitForPhase(a.id, 'Stopped');
    await sleep(500);
    ctrlC.abort();
    expect(await watching).toBe(130);
    expect(await watchingJson).toBe(130);

    const [header, ...rows] = tableRows(out.join(''));
    expect(header).toEqual(['TIME', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']);
    expect(rows.every((r) => r[3] === `agent/${name}`)).toBe(true);
    const stored = await p.events(`?agent=${a.id}`);
    // Every stored event exactly once, in order; the PhaseChanged rows are extra (live only).
    expect(rows.filter((r) => r[2] !== 'PhaseChanged').map((r) => r[2])).toEqual(stored.map((e) => e.reason));
    const ids = jsonOut
      .join('')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: number })
      .map((e) => e.id)
      .filter((id) => id > 0);
    expect(ids).toEqual(stored.map((e) => e.id));
  });

  it('events --watch without a filter names agents created after it started', async () => {
    const out: string[] = [];
    const ctrlC = new AbortController();
    const watching = run(['events', '-w', '--since', '1s'], {
      stdout: { write: (c: string | Uint8Array) => (out.push(String(c)), true) },
      stderr: { write: () => true },
      env: { HOME: '/nonexistent', AGENTCTL_SERVER: p.baseUrl, AGENTCTL_TOKEN: p.token },
      signal: ctrlC.signal,
    });
    await sleep(300);
    const name = uniqueName('late');
    const a = await p.create({ name, image, command: ['true'] });
    const deadline = Date.now() + 30_000;
    while (!out.join('').includes('exited with code 0')) {
      if (Date.now() > deadline) throw new Error(`no Completed row; output:\n${out.join('')}`);
      await sleep(50);
    }
    ctrlC.abort();
    expect(await watching).toBe(130);
    const mine = tableRows(out.join('')).filter((r) => r[3] === `agent/${name}`);
    expect(mine.map((r) => r[2])).toEqual(expect.arrayContaining(['Created', 'Scheduled', 'Started', 'Completed']));
    expect(out.join('')).not.toContain(`agent/${a.id}`);
  });

  it('top agents shows a busy agent\'s CPU and memory against its limits; top nodes shows allocation', async () => {
    const busyName = uniqueName('busy');
    const idleName = uniqueName('idle');
    const busy = await p.create({ name: busyName, image, command: ['sh', '-c', 'while :; do :; done'], resources: { cpu: '500m', memory: '64Mi' } });
    const idle = await p.create({ name: idleName, image, command: ['sh', '-c', 'sleep 120'], resources: { cpu: '250m', memory: '32Mi' } });
    await p.waitForPhase(busy.id, 'Running');
    await p.waitForPhase(idle.id, 'Running');

    // After a few sampling intervals (300 ms here) CPU is known: two samples are needed.
    let table = '';
    const deadline = Date.now() + 20_000;
    for (;;) {
      const res = await p.cli(['top', 'agents', '--sort-by', 'cpu']);
      expect(res.code).toBe(0);
      table = res.stdout;
      const busyRow = tableRows(table).find((r) => r[0] === busyName);
      if (busyRow && busyRow[1] !== '<unknown>' && Number.parseInt(busyRow[1]!, 10) > 100) break;
      if (Date.now() > deadline) throw new Error(`busy agent never showed CPU > 100m:\n${table}`);
      await sleep(300);
    }
    const [header, ...rows] = tableRows(table);
    expect(header).toEqual(['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%']);
    expect(rows[0]![0]).toBe(busyName); // sorted by CPU, highest first
    const busyRow = rows.find((r) => r[0] === busyName)!;
    const idleRow = rows.find((r) => r[0] === idleName)!;
    expect(busyRow[1]).toMatch(/^\d+m$/);
    const busyMilli = Number.parseInt(busyRow[1]!, 10);
    // A spinning shell under a 500m limit: CFS keeps it near 500m (loose: 2 shared cores).
    expect(busyMilli).toBeGreaterThan(100);
    expect(busyMilli).toBeLessThanOrEqual(650);
    expect(Number.parseInt(busyRow[2]!, 10)).toBe(Math.round(busyMilli / 5)); // % of 500m
    expect(busyRow[3]).toMatch(/^\d+(Mi|Ki)$/);
    expect(busyRow[4]).toMatch(/^\d+%$/);
    expect(Number.parseInt(busyRow[4]!, 10)).toBeLessThan(100);
    expect(idleRow[1] === '<unknown>' || Number.parseInt(idleRow[1]!, 10) < busyMilli).toBe(true);

    const json = JSON.parse((await p.cli(['top', 'agents', busyName, '-o', 'json'])).stdout) as { items: { name: string; node: string; usage: { cpuCores: number; memoryLimitBytes: number; cpuLimitCores: number } }[] };
    expect(json.items).toHaveLength(1);
    expect(json.items[0]).toMatchObject({ name: busyName, node: 'local' });
    expect(json.items[0]!.usage.cpuCores).toBeGreaterThan(0.1);
    expect(json.items[0]!.usage.cpuLimitCores).toBe(0.5);
    expect(json.items[0]!.usage.memoryLimitBytes).toBe(64 * 1024 * 1024);

    // Nodes: what the scheduler allocated on "local" to this platform's live agents.
    const nodes = await p.cli(['top', 'nodes']);
    expect(nodes.code).toBe(0);
    const [nodeHeader, ...nodeRows] = tableRows(nodes.stdout);
    expect(nodeHeader).toEqual(['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%', 'CPU(ALLOCATED/ALLOCATABLE)', 'MEMORY(ALLOCATED/ALLOCATABLE)', 'AGENTS']);
    expect(nodeRows).toHaveLength(1);
    const apiNode = (await p.expect(200, 'GET', '/api/v1/nodes')).json.items[0];
    expect(apiNode.allocated.cpuMillicores).toBe(750);
    expect(apiNode.allocated.memoryMiB).toBe(96);
    const pct = (a: number, b: number): string => `${Math.round((a / b) * 100)}%`;
    // Measured columns (1-4) are covered by test/events/agentctl-top-nodes-usage.test.ts.
    expect([nodeRows[0]![0], ...nodeRows[0]!.slice(5)]).toEqual([
      'local',
      `${apiNode.allocated.cpu}/${apiNode.allocatable.cpu} (${pct(750, apiNode.allocatable.cpuMillicores)})`,
      `${apiNode.allocated.memory}/${apiNode.allocatable.memory} (${pct(96, apiNode.allocatable.memoryMiB)})`,
      `2/${apiNode.allocatable.maxAgents}`,
    ]);

    // Stopped agents free their allocation and leave `top agents`.
    await p.expect(200, 'POST', `/api/v1/agents/${busy.id}/stop`);
    await p.expect(200, 'POST', `/api/v1/agents/${idle.id}/stop`);
    await p.waitForPhase(busy.id, 'Stopped');
    await p.waitForPhase(idle.id, 'Stopped');
    expect(await p.cli(['top', 'agents'])).toMatchObject({ code: 0, stdout: '', stderr: 'No running agents.\n' });
    expect(tableRows((await p.cli(['top', 'nodes'])).stdout)[1]![7]).toBe(`0/${apiNode.allocatable.maxAgents}`);
  });
});
