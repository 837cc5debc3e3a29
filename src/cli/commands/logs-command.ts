import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { AgentJson, PhaseName } from '../api-types.js';
import type { PlatformClient } from '../client.js';
import type { CommandContext } from '../command-context.js';
import { toSinceParam } from '../duration.js';
import { writeWithBackpressure } from '../io.js';
import { Spinner } from '../spinner.js';

/** Phases in which the agent has no started container yet. */
const NOT_STARTED: ReadonlySet<PhaseName> = new Set(['Pending', 'Starting']);
/** Between polls while waiting for the container; the same pace as `wait`. */
const START_POLL_MS = 400;

/**
 * Waits until the agent leaves Pending/Starting. Why: `create` then `logs -f` is the common
 * flow, and before its container runs the server answers an empty, already finished
 * stream, so `logs -f` would exit at once with nothing printed. Only Ctrl-C ends the wait,
 * as it does the follow itself.
 */
async function untilStarted(ctx: CommandContext, client: PlatformClient, agent: AgentJson): Promise<AgentJson> {
  if (!NOT_STARTED.has(agent.status.phase)) return agent;
  const spinner = new Spinner(ctx.io.stderr);
  spinner.start(`waiting for agent/${agent.name} to start: phase ${agent.status.phase}`);
  try {
    let current = agent;
    while (NOT_STARTED.has(current.status.phase)) {
      await sleep(START_POLL_MS, undefined, { signal: ctx.signal });
      current = await client.getAgent(agent.id, ctx.signal);
      spinner.update(`waiting for agent/${agent.name} to start: phase ${current.status.phase}${current.status.reason ? ` (${current.status.reason})` : ''}`);
    }
    return current;
  } finally {
    spinner.stop();
  }
}

/** `agentctl logs NAME|ID [-f] [--tail N] [--since 10m|RFC3339] [--timestamps]`. */
export function registerLogsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('logs')
    .description("Print an agent's logs")
    .argument('<agent>', 'name or id')
    .option('-f, --follow', 'stream new lines until the container ends (waits for it to start first)', false)
    .option('--tail <lines>', 'only the last N lines')
    .option('--since <time>', 'only lines newer than a duration (10m) or an RFC 3339 time')
    .option('--timestamps', 'prefix every line with its time', false)
    .action(async (nameOrId: string, opts: { follow: boolean; tail?: string; since?: string; timestamps: boolean }) => {
      let tail: number | undefined;
      if (opts.tail !== undefined) {
        if (!/^[0-9]+$/.test(opts.tail)) throw new InputError(`--tail ${opts.tail}: must be a whole number of lines`, { value: opts.tail }, 'INVALID_ARGUMENT');
        tail = Number(opts.tail);
      }
      const since = opts.since === undefined ? undefined : toSinceParam(opts.since);
      const client = await ctx.client();
      let agent = await client.resolveAgent(nameOrId, ctx.signal);
      if (opts.follow) agent = await untilStarted(ctx, client, agent);
      for await (const chunk of client.streamLogs(agent.id, { tail, since, follow: opts.follow, timestamps: opts.timestamps }, ctx.signal)) {
        await writeWithBackpressure(ctx.io.stdout, chunk);
      }
    });
}
