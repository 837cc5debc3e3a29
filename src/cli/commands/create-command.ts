import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { CreateAgentBody } from '../api-types.js';
import type { CommandContext } from '../command-context.js';
import { errorText } from '../error-text.js';
import { parseAgentManifests } from '../manifest.js';
import { parseOutputFormat, renderAgents } from '../output.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

async function readSource(ctx: CommandContext, file: string): Promise<string> {
  if (file === '-') {
    if (!ctx.io.stdin) throw new InputError('-f -: no standard input available', undefined, 'INVALID_ARGUMENT');
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of ctx.io.stdin) text += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    return text + decoder.decode();
  }
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read ${file}: ${(err as Error).message}`, { file }, 'FILE_NOT_READABLE');
  }
}

/** `agentctl create -f agent.yaml|agent.json|- [--idempotency-key K] [-o json|yaml|name]`. */
export function registerCreateCommand(program: Command, ctx: CommandContext): void {
  program
    .command('create')
    .description('Create agents from YAML or JSON manifests (one agent, a list, or several --- documents)')
    .option('-f, --filename <file>', 'manifest file, or - for standard input (repeatable)', collect, [] as string[])
    .option('--idempotency-key <key>', 'retry-safe key; with several agents, "-<n>" is appended per agent')
    .option('-o, --output <format>', 'print the created agents as json, yaml or name')
    .action(async (opts: { filename: string[]; idempotencyKey?: string; output?: string }) => {
      if (opts.filename.length === 0) throw new InputError('create needs -f FILE (or -f - for standard input)', undefined, 'INVALID_ARGUMENT');
      const output = opts.output === undefined ? undefined : parseOutputFormat(opts.output);
      // parse everything before creating anything, so a typo in the third document does not leave two created
      const bodies: Array<{ body: CreateAgentBody }> = [];
      for (const file of opts.filename) {
        const source = file === '-' ? '<stdin>' : file;
        for (const body of parseAgentManifests(await readSource(ctx, file), source)) bodies.push({ body });
      }
      const client = await ctx.client();
      for (const [i, { body }] of bodies.entries()) {
        const idempotencyKey = opts.idempotencyKey && bodies.length > 1 ? `${opts.idempotencyKey}-${i + 1}` : opts.idempotencyKey;
        try {
          const { agent, created } = await client.createAgent(body, { idempotencyKey, signal: ctx.signal });
          if (output && output !== 'table' && output !== 'wide') ctx.out(renderAgents([agent], output, { nowMs: ctx.now(), single: true }));
          else ctx.out(`agent/${agent.name} ${created ? 'created' : 'unchanged (idempotent replay)'} (id ${agent.id})\n`);
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          ctx.err(`${errorText(err)} [agent ${body.name}]\n`);
          ctx.fail();
        }
      }
    });
}
