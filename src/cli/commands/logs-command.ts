import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { CommandContext } from '../command-context.js';
import { toSinceParam } from '../duration.js';
import { writeWithBackpressure } from '../io.js';

/** `agentctl logs NAME|ID [-f] [--tail N] [--since 10m|RFC3339] [--timestamps]`. */
export function registerLogsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('logs')
    .description("Print an agent's logs")
    .argument('<agent>', 'name or id')
    .option('-f, --follow', 'stream new lines until the container ends', false)
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
      const agent = await client.resolveAgent(nameOrId, ctx.signal);
      for await (const chunk of client.streamLogs(agent.id, { tail, since, follow: opts.follow, timestamps: opts.timestamps }, ctx.signal)) {
        await writeWithBackpressure(ctx.io.stdout, chunk);
      }
    });
}
