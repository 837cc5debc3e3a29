import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { CommandContext } from '../command-context.js';
import { formatTable } from '../output.js';

interface UsageFigures {
  runSeconds: number;
  cpuCoreSeconds: number;
  memoryGiBSeconds: number;
  gpuSeconds: number;
  usedCpuSeconds: number | null;
  cost: string;
}

interface UsageJson {
  tenantId: string;
  from: string;
  to: string;
  groupBy: string;
  currency: string;
  rows: (UsageFigures & { key: string; name?: string })[];
  total: UsageFigures;
}

const GROUPS = ['agent', 'day', 'label'];

/** `agentctl usage [--tenant T] [--from F] [--to T] [--group-by agent|day|label] [--label K] [-o table|json|csv]`. */
export function registerUsageCommand(program: Command, ctx: CommandContext): void {
  program
    .command('usage')
    .description('Usage and cost of a tenant: allocated core-, GiB- and GPU-seconds while Running, priced by the rate card')
    .option('--tenant <id>', "tenant (default: the caller's own)")
    .option('--from <time>', 'start, RFC 3339 or YYYY-MM-DD (default: start of this month, UTC)')
    .option('--to <time>', 'end, exclusive (default: now)')
    .option('--group-by <group>', 'agent, day or label', 'agent')
    .option('--label <key>', 'label key for --group-by label')
    .option('-o, --output <format>', 'table, json or csv', 'table')
    .action(async (opts: { tenant?: string; from?: string; to?: string; groupBy: string; label?: string; output: string }) => {
      if (!GROUPS.includes(opts.groupBy)) throw new InputError(`--group-by ${opts.groupBy}: use agent, day or label`, { value: opts.groupBy }, 'INVALID_ARGUMENT');
      if (!['table', 'json', 'csv'].includes(opts.output)) throw new InputError(`-o ${opts.output}: use table, json or csv`, { value: opts.output }, 'INVALID_ARGUMENT');
      const client = await ctx.client();
      const tenant = opts.tenant ?? (await client.whoami(ctx.signal)).tenantId;
      const query = { from: opts.from, to: opts.to, groupBy: opts.groupBy, label: opts.label };
      if (opts.output === 'csv') {
        ctx.out(String(await client.getUsage(tenant, query, { csv: true, signal: ctx.signal })));
        return;
      }
      const usage = (await client.getUsage(tenant, query, { signal: ctx.signal })) as UsageJson;
      if (opts.output === 'json') {
        ctx.out(JSON.stringify(usage, null, 2) + '\n');
        return;
      }
      ctx.out(formatUsageTable(usage));
    });
}

/** The usage report as a kubectl-style table with a TOTAL line. */
export function formatUsageTable(u: UsageJson): string {
  const head = [u.groupBy.toUpperCase(), ...(u.groupBy === 'agent' ? ['NAME'] : []), 'RUN-SECONDS', 'CORE-SECONDS', 'GIB-SECONDS', 'GPU-SECONDS', 'USED-CPU-SECONDS', `COST (${u.currency})`];
  const line = (key: string, name: string | undefined, f: UsageFigures): string[] => [
    key || '<none>',
    ...(u.groupBy === 'agent' ? [name ?? ''] : []),
    String(f.runSeconds),
    String(f.cpuCoreSeconds),
    String(f.memoryGiBSeconds),
    String(f.gpuSeconds),
    f.usedCpuSeconds === null ? '<unknown>' : String(f.usedCpuSeconds),
    f.cost,
  ];
  const rows = u.rows.map((r) => line(r.key, r.name, r));
  rows.push(line('TOTAL', u.groupBy === 'agent' ? '' : undefined, u.total));
  return `tenant ${u.tenantId}, ${u.from} to ${u.to}\n` + formatTable(head, rows);
}
