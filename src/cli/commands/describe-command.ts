import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { findResourceKind } from '../resources/resource-registry.js';

/** `agentctl describe agent NAME|ID...` (all agents when no name is given, as kubectl does). */
export function registerDescribeCommand(program: Command, ctx: CommandContext): void {
  program
    .command('describe')
    .description('Show details of objects, including recent events')
    .argument('<resource>', 'agent (agents, ag)')
    .argument('[names...]', 'names or ids')
    .action(async (resource: string, names: string[]) => {
      await findResourceKind(resource).describe(ctx, names);
    });
}
