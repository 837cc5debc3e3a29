import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { errorText } from '../error-text.js';
import { agentResource } from '../resources/agent-resource.js';

/**
 * `agentctl delete NAME|ID...`. The kubectl habit `delete agent NAME` also works: a leading
 * resource word followed by more arguments is taken as the kind, not as an agent name.
 */
export function registerDeleteCommand(program: Command, ctx: CommandContext): void {
  program
    .command('delete')
    .description('Delete agents (their containers are removed)')
    .argument('<agents...>', 'names or ids')
    .action(async (args: string[]) => {
      const names = args.length > 1 && agentResource.names.includes(args[0]!.toLowerCase()) ? args.slice(1) : args;
      const client = await ctx.client();
      for (const nameOrId of names) {
        try {
          const agent = await client.resolveAgent(nameOrId, ctx.signal);
          const result = await client.deleteAgent(agent.id, ctx.signal);
          if (result.deleted) ctx.out(`agent "${agent.name}" deleted\n`);
          else ctx.out(`agent "${agent.name}" deletion requested (phase: ${result.agent.status?.phase ?? 'Deleting'})\n`);
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          ctx.err(errorText(err) + '\n');
          ctx.fail();
        }
      }
    });
}
