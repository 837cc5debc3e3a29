import { stringify as toYaml } from 'yaml';
import { InputError } from '../domain/errors.js';
import type { AgentJson } from './api-types.js';
import { formatAge } from './duration.js';

export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml', 'name'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(value: string | undefined): OutputFormat {
  if (value === undefined || value === '') return 'table';
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new InputError(`-o ${value}: unknown output format; use one of json, yaml, wide, name`, { value }, 'INVALID_ARGUMENT');
}

/** Shown in a cell that has no value, as kubectl does, so columns stay awk-friendly. */
export const NONE = '<none>';

/**
 * Plain aligned columns like kubectl's tabwriter: every column but the last is padded to
 * its widest cell plus three spaces; no box drawing, no trailing spaces.
 */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows];
  const widths = header.map((_, col) => Math.max(...all.map((row) => (row[col] ?? '').length)));
  const lines = all.map((row) =>
    row
      .map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]! + 3)))
      .join('')
      .trimEnd(),
  );
  return lines.join('\n') + '\n';
}

/** Milliseconds since an RFC 3339 time, formatted as an age; unknown times show <unknown>. */
export function ageOf(time: string | undefined, nowMs: number): string {
  if (!time) return '<unknown>';
  const t = Date.parse(time);
  return Number.isNaN(t) ? '<unknown>' : formatAge(nowMs - t);
}

const AGENT_COLUMNS = ['NAME', 'ID', 'PHASE', 'REASON', 'NODE', 'RESTARTS', 'AGE'];
const AGENT_WIDE_COLUMNS = [...AGENT_COLUMNS, 'IMAGE', 'CPU', 'MEMORY', 'EXIT'];

export function agentRow(agent: AgentJson, wide: boolean, nowMs: number): string[] {
  const s = agent.status;
  const row = [agent.name, agent.id, s.phase, s.reason || NONE, s.node || NONE, String(s.restarts ?? 0), ageOf(agent.createdAt, nowMs)];
  if (!wide) return row;
  const r = agent.spec.resources;
  return [...row, agent.spec.image, r.cpu, r.memory, s.exitCode === undefined || s.exitCode === null ? NONE : String(s.exitCode)];
}

/**
 * Renders agents in the chosen format. `single` makes json/yaml print the object itself
 * (as `get agent NAME` does) instead of an `{items: [...]}` list.
 */
export function renderAgents(agents: readonly AgentJson[], format: OutputFormat, options: { nowMs: number; single?: boolean }): string {
  switch (format) {
    case 'json':
      return JSON.stringify(options.single && agents.length === 1 ? agents[0] : { items: agents }, null, 2) + '\n';
    case 'yaml':
      return toYaml(options.single && agents.length === 1 ? agents[0] : { items: agents });
    case 'name':
      return agents.map((a) => `agent/${a.name}\n`).join('');
    case 'table':
    case 'wide': {
      if (agents.length === 0) return '';
      const wide = format === 'wide';
      return formatTable(wide ? AGENT_WIDE_COLUMNS : AGENT_COLUMNS, agents.map((a) => agentRow(a, wide, options.nowMs)));
    }
  }
}
