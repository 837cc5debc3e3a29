/**
 * Sort reasons (count descending, then reason by code unit) and render the kube-scheduler
 * style message "0/N nodes are available: 2 insufficient memory, 1 cordoned.".
 */
export function unschedulableMessage(totalNodes: number, counts: ReadonlyMap<string, number>): { message: string; reasons: Record<string, number> } {
  const sorted = [...counts].sort(([ra, ca], [rb, cb]) => cb - ca || (ra < rb ? -1 : ra > rb ? 1 : 0));
  const reasons: Record<string, number> = {};
  for (const [reason, count] of sorted) reasons[reason] = count;
  const parts = sorted.map(([reason, count]) => `${count} ${reason}`);
  const message = parts.length === 0 ? `0/${totalNodes} nodes are available.` : `0/${totalNodes} nodes are available: ${parts.join(', ')}.`;
  return { message, reasons };
}
