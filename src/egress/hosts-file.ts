import { readFile } from 'node:fs/promises';
import { checkHostname } from './hostname.js';
import { parseIp, unmapIp, type IpAddress } from './ip-address.js';

/** Host name to addresses, in file order. */
export type HostsTable = ReadonlyMap<string, readonly IpAddress[]>;

/**
 * Parses /etc/hosts format: `address name [aliases...]`, `#` comments. Lines with an
 * invalid address or name are skipped (as the C library does). Pure.
 */
export function parseHostsFile(text: string): HostsTable {
  const table = new Map<string, IpAddress[]>();
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [addressText, ...names] = line.split(/\s+/);
    const parsed = addressText === undefined ? undefined : parseIp(addressText);
    if (parsed === undefined) continue;
    const ip = unmapIp(parsed);
    for (const name of names) {
      const checked = checkHostname(name);
      if ('error' in checked) continue;
      const list = table.get(checked.host) ?? [];
      if (!list.some((a) => a.family === ip.family && a.value === ip.value)) list.push(ip);
      table.set(checked.host, list);
    }
  }
  return table;
}

/** Reads and parses a hosts file. @throws the fs error when the file cannot be read. */
export async function loadHostsFile(path: string, signal?: AbortSignal): Promise<HostsTable> {
  return parseHostsFile(await readFile(path, { encoding: 'utf8', signal }));
}
