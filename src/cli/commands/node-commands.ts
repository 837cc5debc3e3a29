import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { errorText } from '../error-text.js';

/** Runs `action` per node, reporting failures per node and carrying on with the rest. */
async function forEachNode(ctx: CommandContext, names: string[], action: (id: string) => Promise<string>): Promise<void> {
  for (const id of names) {
    try {
      ctx.out(`${await action(id)}\n`);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      ctx.err(errorText(err) + '\n');
      ctx.fail();
    }
  }
}

/** `agentctl cordon NODE...`, `uncordon NODE...`, `drain NODE...` (need the platform-admin role). */
export function registerNodeCommands(program: Command, ctx: CommandContext): void {
  program
    .command('cordon')
    .description('Mark nodes unschedulable: no new agents; agents on them keep running')
    .argument('<nodes...>', 'node names')
    .action(async (names: string[]) => {
      const client = await ctx.client();
      await forEachNode(ctx, names, async (id) => `node/${(await client.setNodeCordon(id, true, ctx.signal)).id} cordoned`);
    });
  program
    .command('uncordon')
    .description('Mark nodes schedulable again (also clears an unhealthy mark)')
    .argument('<nodes...>', 'node names')
    .action(async (names: string[]) => {
      const client = await ctx.client();
      await forEachNode(ctx, names, async (id) => `node/${(await client.setNodeCordon(id, false, ctx.signal)).id} uncordoned`);
    });
  program
    .command('drain')
    .description('Cordon nodes and move their restartable agents (OnFailure, Always) elsewhere; Never agents run to completion')
    .argument('<nodes...>', 'node names')
    .action(async (names: string[]) => {
      const client = await ctx.client();
      await forEachNode(ctx, names, async (id) => {
        const r = await client.drainNode(id, ctx.signal);
        if (r.errors > 0) ctx.fail();
        return `node/${r.node} drained: ${r.rescheduled} agent(s) moved, ${r.remaining} left to finish${r.errors ? `, ${r.errors} could not be moved (drain again to retry)` : ''}`;
      });
    });
}
