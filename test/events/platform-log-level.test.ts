/**
 * AGENT_PLATFORM_LOG_LEVEL on the real platform (buildPlatform in-process, SQLite in a temp
 * dir, two simulated nodes, no Docker), its pino output captured through the platform's
 * logStream. The same things happen at each level: API requests (an `info` line each), a
 * node that stops answering (`warn` lines from the node pool and status poller, and a
 * `debug` line from every resync that cannot list its containers). At `warn` only the warn
 * lines pass; at `debug` the debug and info lines appear too.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventsPlatform, sleep } from './events-platform.js';

// pino's numeric levels.
const DEBUG = 20;
const INFO = 30;
const WARN = 40;

async function runAt(level: string): Promise<{ p: EventsPlatform; lines: Record<string, any>[] }> {
  const p = await EventsPlatform.start({
    nodes: 'simulated',
    simulatedNodes: 2,
    captureLogs: true,
    env: { AGENT_PLATFORM_LOG_LEVEL: level, AGENT_PLATFORM_HEARTBEAT_INTERVAL_MS: '100', AGENT_PLATFORM_NODE_GRACE_MS: '600' },
  });
  for (let i = 0; i < 3; i++) await p.expect(200, 'GET', '/api/v1/agents');
  p.cluster!.setNodeDown('sim-00002', true);
  // Until the node is NotReady (a warn line at every level up to warn) and two resync
  // passes (every 500 ms) have failed to list its containers.
  const deadline = Date.now() + 10_000;
  while (!(await p.events('?node=sim-00002')).some((e) => e.reason === 'NodeNotReady')) {
    if (Date.now() > deadline) throw new Error('sim-00002 never went NotReady');
    await sleep(100);
  }
  await sleep(1_200);
  return { p, lines: p.logs() };
}

describe('AGENT_PLATFORM_LOG_LEVEL', () => {
  const started: EventsPlatform[] = [];

  afterEach(async () => {
    for (const p of started.splice(0)) await p.close();
  });

  it('at warn, info and debug lines are filtered and warn lines pass', async () => {
    const { p, lines } = await runAt('warn');
    started.push(p);
    expect(p.config.logLevel).toBe('warn');
    expect(lines.length, 'some warn lines').toBeGreaterThan(0);
    expect(lines.filter((l) => l.level < WARN), JSON.stringify(lines.filter((l) => l.level < WARN).slice(0, 3))).toEqual([]);
    expect(lines.some((l) => l.level === WARN && l.node === 'sim-00002')).toBe(true);
    // The requests were made, but their info lines did not pass.
    expect(lines.some((l) => l.msg === 'request')).toBe(false);
  }, 30_000);

  it('at debug, debug lines appear beside the info and warn ones', async () => {
    const { p, lines } = await runAt('debug');
    started.push(p);
    const debug = lines.filter((l) => l.level === DEBUG);
    expect(debug.some((l) => l.msg === 'resync: node did not list its containers' && l.node === 'sim-00002' && l.component === 'agent-controller')).toBe(true);
    expect(lines.filter((l) => l.level === INFO && l.msg === 'request').length).toBeGreaterThanOrEqual(3);
    expect(lines.some((l) => l.level === WARN && l.node === 'sim-00002')).toBe(true);
  }, 30_000);
});
