/**
 * A leader that pauses, for test/ha/fencing.test.ts: run as its own process
 * (`node --import tsx test/ha/paused-leader-process.ts`), because a pause must stop
 * everything this replica does (renewals, timers, I/O callbacks) and nothing the other
 * replica does, as a long GC pause or SIGSTOP would.
 *
 * It campaigns with a real Redis lease and records its token in the store (as the
 * platform does), then writes the agent AGENT_ID with its token every 20 ms. After three
 * writes it freezes its event loop (synchronous waits) until RESUME_FILE exists, then
 * writes again at once, without first checking whether it still leads: the write of a
 * deposed leader that has not noticed yet. A fenced-out write steps down.
 *
 * Reports JSON lines on stdout: leading, wrote, paused, resumed, fenced, term-ended,
 * error, exited. SIGTERM stops it cleanly (exit code 0).
 *
 * Env: STORE_URL (postgres://… or empty for SQLite in DATA_DIR), DATA_DIR, REDIS_URL,
 * REDIS_PREFIX, LEASE_TTL_MS, AGENT_ID, RESUME_FILE.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LeaderElector } from '../../src/ha/leader-elector.js';
import { RedisLeaderLease } from '../../src/ha/redis-leader-lease.js';
import { VersionConflictError } from '../../src/domain/errors.js';
import { FencedOutError } from '../../src/store/fenced-out-error.js';
import { openStore } from '../../src/store/open-store.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const say = (event: string, extra: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ event, ...extra })}\n`);

const agentId = env('AGENT_ID');
const resumeFile = env('RESUME_FILE');
const store = await openStore(env('STORE_URL'), env('DATA_DIR'));
const lease = new RedisLeaderLease({ url: env('REDIS_URL'), prefix: env('REDIS_PREFIX'), ttlMs: Number(env('LEASE_TTL_MS')) });

/** Blocks the whole process (no timer, no I/O callback runs) until the resume file exists. */
function freezeUntilResumed(): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(resumeFile)) Atomics.wait(cell, 0, 0, 20);
}

async function writeLoop(signal: AbortSignal, token: number, stepDown: (reason: string) => void): Promise<void> {
  let writes = 0;
  for (;;) {
    const agent = await store.getAgent(agentId);
    if (!agent) return say('error', { message: `agent ${agentId} is gone` });
    try {
      await store.updateAgentWithEvents(agent, { labels: { writer: 'paused-leader', n: String(writes + 1) }, updatedAt: Date.now() }, [], token);
      writes++;
      say('wrote', { n: writes, token });
    } catch (err) {
      if (err instanceof FencedOutError) {
        say('fenced', { token, recordedToken: err.recordedToken, code: err.code });
        stepDown(err.message);
        return;
      }
      if (err instanceof VersionConflictError) continue;
      return say('error', { message: err instanceof Error ? err.message : String(err) });
    }
    if (writes === 3) {
      say('paused', { token });
      freezeUntilResumed();
      say('resumed', { token, stillBelievesItLeads: !signal.aborted });
      continue;
    }
    if (signal.aborted) return;
    await sleep(20);
  }
}

const elector = new LeaderElector({
  lease,
  replicaId: 'paused-leader',
  fence: store,
  lead: (signal, token, stepDown) => {
    say('leading', { token });
    signal.addEventListener('abort', () => say('term-ended', { token }), { once: true });
    writeLoop(signal, token, stepDown).catch((err: unknown) => say('error', { message: String(err) }));
  },
});
elector.start();

process.once('SIGTERM', () => {
  void (async () => {
    await elector.stop();
    await lease.close();
    await store.close();
    say('exited');
    process.exit(0);
  })();
});
