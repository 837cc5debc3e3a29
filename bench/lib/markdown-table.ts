/**
 * A GitHub-flavoured markdown table with padded columns, so it reads well in a
 * terminal too. Columns whose indexes `numeric` lists are right-aligned.
 */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], numeric: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const pad = (cell: string, i: number): string => (numeric.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => pad(c, i)).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric.has(i) ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** Milliseconds with one decimal, the precision these benchmarks can honestly claim. */
export const formatMs = (ms: number): string => (Number.isFinite(ms) ? ms.toFixed(1) : 'n/a');
