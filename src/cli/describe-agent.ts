import type { AgentJson, EventJson } from './api-types.js';
import { ageOf, formatTable, NONE } from './output.js';

/** How many of the most recent events `describe` shows. */
export const DESCRIBE_EVENT_LIMIT = 20;

type Line = [label: string, value: string] | [section: string];

/**
 * `agentctl describe agent` in kubectl's layout: "Label:" column then value, nested
 * sections indented by two spaces, multi-value fields (labels, env) one per line.
 * `events` is undefined when they could not be fetched; `eventsError` then says why.
 */
export function describeAgent(agent: AgentJson, events: readonly EventJson[] | undefined, options: { nowMs: number; eventsError?: string }): string {
  const s = agent.status;
  const spec = agent.spec;
  const r = spec.resources;
  const out: string[] = [];
  const block = (indent: string, lines: Line[]): void => {
    const width = Math.max(...lines.filter((l) => l.length === 2).map((l) => l[0].length + 1), 0);
    for (const line of lines) {
      if (line.length === 1) {
        out.push(`${indent}${line[0]}:`);
        continue;
      }
      const [label, value] = line;
      const [first = '', ...rest] = value.split('\n');
      out.push(`${indent}${(label + ':').padEnd(width + 2)}${first}`.trimEnd());
      for (const more of rest) out.push(`${indent}${' '.repeat(width + 2)}${more}`);
    }
  };
  const when = (time: string | undefined): string => (time ? `${time} (${ageOf(time, options.nowMs)} ago)` : NONE);
  const pairs = (record: Record<string, string> | undefined, sep = '='): string =>
    record && Object.keys(record).length ? Object.entries(record).map(([k, v]) => `${k}${sep}${v}`).join('\n') : NONE;

  block('', [
    ['Name', agent.name],
    ['ID', agent.id],
    ['Tenant', agent.tenantId],
    ['Labels', pairs(agent.labels)],
    ['Desired State', agent.desiredState],
    ['Created', when(agent.createdAt)],
    ['Updated', when(agent.updatedAt)],
    ['Version', String(agent.version)],
  ]);
  out.push('Status:');
  const statusLines: Line[] = [
    ['Phase', s.phase],
    ['Reason', s.reason || NONE],
    ['Message', s.message || NONE],
    ['Node', s.node || NONE],
    ['Container ID', s.containerId || NONE],
    ['Exit Code', s.exitCode === undefined || s.exitCode === null ? NONE : String(s.exitCode)],
    ['Restarts', String(s.restarts ?? 0)],
    ['Started', when(s.startedAt)],
    ['Finished', when(s.finishedAt)],
  ];
  if (s.nextAttemptAt) statusLines.push(['Next Attempt', s.nextAttemptAt]);
  block('  ', statusLines);
  out.push('Spec:');
  block('  ', [
    ['Image', spec.image],
    ['Command', spec.command?.length ? spec.command.join(' ') : NONE],
    ['Args', spec.args?.length ? spec.args.map(shellQuote).join(' ') : NONE],
    ['Working Dir', spec.workingDir || NONE],
    ['Environment', pairs(spec.env)],
    ['Requests', `cpu: ${r.cpu}, memory: ${r.memory}, gpu: ${r.gpu ?? 0}`],
    ['Limits', `cpu: ${r.limits?.cpu ?? r.cpu}, memory: ${r.limits?.memory ?? r.memory}`],
    ['Restart Policy', spec.restartPolicy],
    ['Scheduling Policy', spec.schedulingPolicy],
    ['Priority', String(spec.priority ?? 0)],
    ['Node Selector', pairs(spec.nodeSelector)],
    ['Tolerations', spec.tolerations?.length ? spec.tolerations.map(formatToleration).join('\n') : NONE],
    ['Timeout', spec.timeoutSeconds !== undefined ? `${spec.timeoutSeconds}s` : NONE],
  ]);
  if (events === undefined) {
    out.push(`Events:  <unable to fetch: ${options.eventsError ?? 'unknown error'}>`);
  } else if (events.length === 0) {
    out.push(`Events:  ${NONE}`);
  } else {
    out.push('Events:');
    const recent = [...events].sort((a, b) => Date.parse(a.time) - Date.parse(b.time)).slice(-DESCRIBE_EVENT_LIMIT);
    const table = formatTable(
      ['Type', 'Reason', 'Age', 'Message'],
      [['----', '------', '----', '-------'], ...recent.map((e) => [e.type, e.reason, ageOf(e.time, options.nowMs), e.message.replace(/\s*\n\s*/g, ' ')])],
    );
    out.push(...table.trimEnd().split('\n').map((l) => `  ${l}`));
  }
  return out.join('\n') + '\n';
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function formatToleration(t: { key?: string; operator?: string; value?: string; effect?: string }): string {
  const op = t.operator === 'Exists' ? ' exists' : `=${t.value ?? ''}`;
  return `${t.key ?? '<all>'}${op}${t.effect ? `:${t.effect}` : ''}`;
}
