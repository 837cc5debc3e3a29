import type { Command } from 'commander';
import type { AgentJson } from '../api-types.js';
import type { CommandContext } from '../command-context.js';
import type { PlatformClient } from '../client.js';
import { errorText } from '../error-text.js';

type Action = (client: PlatformClient, id: string, signal: AbortSignal) => Promise<AgentJson>;

/** Runs `action` on each NAME|ID, reporting failures per agent and carrying on with the rest. */
async function forEachAgent(ctx: CommandContext, names: string[], verb: string, action: Action): Promise<void> {
  const client = await ctx.client();
  for (const nameOrId of names) {
    try {
      const resolved = await client.resolveAgent(nameOrId, ctx.signal);
      const agent = await action(client, resolved.id, ctx.signal);
      ctx.out(`agent/${agent.name} ${verb} requested (phase: ${agent.status.phase})\n`);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      ctx.err(errorText(err) + '\n');
      ctx.fail();
    }
  }
}

/** `agentctl stop NAME|ID...` and `agentctl start NAME|ID...`. */
export function registerLifecycleCommands(program: Command, ctx: CommandContext): void {
  program
    .command('stop')
    .description('Stop agents (desired state stopped); they keep their spec and can be started again')
    .argument('<agents...>', 'names or ids')
    .action(async (names: string[]) => forEachAgent(ctx, names, 'stop', (c, id, s) => c.stopAgent(id, s)));
  program
    .command('start')
    .description('Start stopped agents again (desired state running)')
    .argument('<agents...>', 'names or ids')
    .action(async (names: string[]) => forEachAgent(ctx, names, 'start', (c, id, s) => c.startAgent(id, s)));
}
