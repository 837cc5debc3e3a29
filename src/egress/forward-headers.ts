/** Headers that describe one hop, not the message; a proxy must not pass them on (RFC 9110 7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade']);

/**
 * Filters raw headers (`[name, value, name, value, ...]`, as IncomingMessage.rawHeaders) for
 * the next hop: drops hop-by-hop headers, the ones the Connection header lists, and any names
 * in `alsoDrop` (lower case). Keeps order and case of the rest. Pure.
 */
export function forwardHeaders(rawHeaders: readonly string[], alsoDrop: readonly string[] = []): string[] {
  const drop = new Set([...HOP_BY_HOP, ...alsoDrop]);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() !== 'connection') continue;
    for (const token of (rawHeaders[i + 1] ?? '').split(',')) drop.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] ?? '';
    if (!drop.has(name.toLowerCase())) out.push(name, rawHeaders[i + 1] ?? '');
  }
  return out;
}
