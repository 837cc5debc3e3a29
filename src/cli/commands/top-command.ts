import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { AgentJson } from '../api-types.js';
import type { PlatformClient } from '../client.js';
import type { CommandContext } from '../command-context.js';
import type { NodeJson } from '../node-types.js';
import { formatTable } from '../output.js';

/** The `usage` field of GET /api/v1/agents/{id} (src/api/schemas/agent-schema.ts AgentUsage). */
export interface AgentUsageJson {
  cpuCores: number | null;
  memoryWorkingSetBytes: number;
  memoryLimitBytes: number;
  cpuLimitCores: number;
  sampledAt: string;
}

type AgentWithUsage = AgentJson & { usage?: AgentUsageJson };

/** GETs in flight at once when the list does not carry usage: quick, without flooding the server. */
const LOOKUP_CONCURRENCY = 8;
const MIB = 1024 * 1024;
const UNKNOWN = '<unknown>';

const percent = (used: number, total: number): string => (total > 0 ? `${Math.round((used / total) * 100)}%` : UNKNOWN);

/** kubectl top's units: CPU in millicores ("250m"), memory in MiB ("64Mi"; KiB below one MiB, so a tiny agent does not read "0Mi"). */
export function formatCpuCores(cores: number): string {
  return `${Math.round(cores * 1000)}m`;
}

export function formatMemoryBytes(bytes: number): string {
  if (bytes < MIB) return `${Math.round(bytes / 1024)}Ki`;
  return `${Math.round(bytes / MIB)}Mi`;
}

/** NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%; percentages are of the container's limits. */
export function agentTopRow(a: AgentWithUsage): string[] {
  const u = a.usage;
  if (!u) return [a.name, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN];
  return [
    a.name,
    u.cpuCores === null ? UNKNOWN : formatCpuCores(u.cpuCores),
    u.cpuCores === null ? UNKNOWN : percent(u.cpuCores, u.cpuLimitCores),
    formatMemoryBytes(u.memoryWorkingSetBytes),
    percent(u.memoryWorkingSetBytes, u.memoryLimitBytes),
  ];
}

/**
 * kubectl top's NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%, measured (percentages of
 * allocatable, as kubectl's), then what the scheduler has handed out: CPU and memory
 * allocated/allocatable and agents/max. Measured columns read <unknown> where the node has
 * no usage (simulated, not sampled yet) or no CPU rate yet.
 */
export function nodeTopRow(n: NodeJson): string[] {
  const u = n.usage;
  const cpu = u?.cpuMillicores ?? null;
  return [
    n.id,
    cpu === null ? UNKNOWN : formatCpuCores(cpu / 1000),
    cpu === null ? UNKNOWN : percent(cpu, n.allocatable.cpuMillicores),
    u ? formatMemoryBytes(u.memoryWorkingSetBytes) : UNKNOWN,
    u ? percent(u.memoryWorkingSetBytes, n.allocatable.memoryMiB * MIB) : UNKNOWN,
    `${n.allocated.cpu}/${n.allocatable.cpu} (${percent(n.allocated.cpuMillicores, n.allocatable.cpuMillicores)})`,
    `${n.allocated.memory}/${n.allocatable.memory} (${percent(n.allocated.memoryMiB, n.allocatable.memoryMiB)})`,
    `${n.allocated.agents}/${n.allocatable.maxAgents}`,
  ];
}

const AGENT_COLUMNS = ['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%'];
const NODE_COLUMNS = ['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%', 'CPU(ALLOCATED/ALLOCATABLE)', 'MEMORY(ALLOCATED/ALLOCATABLE)', 'AGENTS'];
const SORTS = ['cpu', 'memory'] as const;

/** Runs `fn` over `items`, at most `limit` at a time, keeping order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Running agents with their latest usage. The list endpoint may not carry usage (only
 * GET /api/v1/agents/{id} does), so agents without it are fetched one by one; an agent
 * that went away meanwhile is left out.
 */
async function runningAgentsWithUsage(client: PlatformClient, signal: AbortSignal, names: readonly string[]): Promise<AgentWithUsage[]> {
  const listed: AgentWithUsage[] = names.length
    ? await Promise.all(names.map((n) => client.resolveAgent(n, signal)))
    : await client.listAllAgents({ phase: ['Running'] }, signal);
  const full = await mapLimited(listed, LOOKUP_CONCURRENCY, async (a) =>
    a.usage !== undefined ? a : ((await client.getAgent(a.id, signal).catch(() => undefined)) as AgentWithUsage | undefined),
  );
  return full.filter((a): a is AgentWithUsage => a !== undefined);
}

/** `agentctl top agents [NAME...] [--sort-by cpu|memory] [-o json]` and `agentctl top nodes [-o json]`. */
export function registerTopCommand(program: Command, ctx: CommandContext): void {
  const top = program.command('top').description('Resource use: measured CPU and memory of running agents, or of nodes beside their allocation');
  const checkOutput = (o: string): void => {
    if (o !== 'table' && o !== 'json') throw new InputError(`-o ${o}: use table or json`, { value: o }, 'INVALID_ARGUMENT');
  };
  top
    .command('agents')
    .alias('agent')
    .description("Running agents' CPU (cores, % of limit) and memory working set (bytes, % of limit), from the platform's last sample")
    .argument('[names...]', 'only these agents (names or ids)')
    .option('--sort-by <field>', 'cpu or memory (highest first)')
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (names: string[], opts: { sortBy?: string; output: string }) => {
      checkOutput(opts.output);
      if (opts.sortBy !== undefined && !(SORTS as readonly string[]).includes(opts.sortBy)) throw new InputError(`--sort-by ${opts.sortBy}: use cpu or memory`, { value: opts.sortBy }, 'INVALID_ARGUMENT');
      const client = await ctx.client();
      const agents = await runningAgentsWithUsage(client, ctx.signal, names);
      if (opts.sortBy === 'cpu') agents.sort((a, b) => (b.usage?.cpuCores ?? -1) - (a.usage?.cpuCores ?? -1));
      if (opts.sortBy === 'memory') agents.sort((a, b) => (b.usage?.memoryWorkingSetBytes ?? -1) - (a.usage?.memoryWorkingSetBytes ?? -1));
      if (opts.output === 'json') {
        ctx.out(JSON.stringify({ items: agents.map((a) => ({ id: a.id, name: a.name, node: a.status.node ?? null, usage: a.usage ?? null })) }, null, 2) + '\n');
        return;
      }
      if (agents.length === 0) {
        ctx.err('No running agents.\n');
        return;
      }
      ctx.out(formatTable(AGENT_COLUMNS, agents.map(agentTopRow)));
      if (agents.some((a) => !a.usage || a.usage.cpuCores === null)) ctx.err(`${UNKNOWN}: not sampled yet (CPU needs two samples); try again in a few seconds\n`);
    });
  top
    .command('nodes')
    .alias('node')
    .description(
      "Nodes: measured CPU and memory of their running agents (% of allocatable; only your tenant's agents unless you are a platform admin), then CPU and memory requested against what they can allocate, and agent counts",
    )
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (opts: { output: string }) => {
      checkOutput(opts.output);
      const client = await ctx.client();
      const nodes = await client.listNodes(ctx.signal);
      if (opts.output === 'json') {
        ctx.out(
          JSON.stringify(
            {
              items: nodes.map((n) => ({
                name: n.id,
                ready: n.ready,
                usage: n.usage ?? null,
                allocated: n.allocated,
                allocatable: n.allocatable,
                capacity: { cpu: n.capacity.cpu, memory: n.capacity.memory, maxAgents: n.capacity.maxAgents },
              })),
            },
            null,
            2,
          ) + '\n',
        );
        return;
      }
      if (nodes.length === 0) {
        ctx.err('No nodes.\n');
        return;
      }
      ctx.out(formatTable(NODE_COLUMNS, nodes.map(nodeTopRow)));
      if (nodes.some((n) => (n.usage?.cpuMillicores ?? null) === null)) ctx.err(`${UNKNOWN}: not measured (simulated node, or not sampled yet; CPU needs two samples); the allocation columns still apply\n`);
    });
}
