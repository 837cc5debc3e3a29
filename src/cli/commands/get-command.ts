import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { parseLabelSelector } from '../label-selector.js';
import { parseOutputFormat } from '../output.js';
import { findResourceKind } from '../resources/resource-registry.js';

/** `agentctl get agents [NAME|ID...] [-o json|yaml|wide|name] [-l k=v] [--phase P]`. */
export function registerGetCommand(program: Command, ctx: CommandContext): void {
  program
    .command('get')
    .description('List objects, or show the named ones')
    .argument('<resource>', 'agents (agent, ag)')
    .argument('[names...]', 'names or ids')
    .option('-o, --output <format>', 'json, yaml, wide or name (default: table)')
    .option('-l, --selector <selector>', 'label selector, e.g. team=ml,tier=batch')
    .option('--phase <phases>', 'only these phases, comma-separated, e.g. Running,Pending')
    .action(async (resource: string, names: string[], opts: { output?: string; selector?: string; phase?: string }) => {
      const kind = findResourceKind(resource);
      await kind.get(ctx, names, {
        output: parseOutputFormat(opts.output),
        labels: opts.selector ? parseLabelSelector(opts.selector) : undefined,
        phases: opts.phase ? opts.phase.split(',').map((p) => p.trim()).filter(Boolean) : undefined,
      });
    });
}
