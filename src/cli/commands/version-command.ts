import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { clientVersion } from '../client-version.js';
import { errorText } from '../error-text.js';

/**
 * `agentctl version [--client]`. An unreachable server is reported on stderr but is not a
 * failure: the command exists to tell what the client is, and must work offline.
 */
export function registerVersionCommand(program: Command, ctx: CommandContext): void {
  program
    .command('version')
    .description('Print the client version and whether the server answers')
    .option('--client', 'client version only; do not contact the server', false)
    .action(async (opts: { client: boolean }) => {
      ctx.out(`Client Version: v${clientVersion()}\n`);
      if (opts.client) return;
      const client = await ctx.client();
      try {
        const health = await client.health(AbortSignal.any([ctx.signal, AbortSignal.timeout(3000)]));
        const version = typeof health === 'object' && health !== null && 'version' in health ? String((health as { version: unknown }).version) : undefined;
        ctx.out(`Server: ${client.baseUrl} (healthy${version ? `, version v${version.replace(/^v/, '')}` : ''})\n`);
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        ctx.err(`Server: ${client.baseUrl} not answering: ${errorText(err).replace(/^Error: /, '')}\n`);
      }
    });
}
