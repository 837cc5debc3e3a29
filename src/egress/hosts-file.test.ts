import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIp } from './ip-address.js';
import { loadHostsFile, parseHostsFile } from './hosts-file.js';

describe('hosts file', () => {
  it('parses addresses, aliases and comments, skipping bad lines', () => {
    const table = parseHostsFile(['# comment', '127.0.0.1 Allowed.Test alias.test # trailing', '::1\tv6.test', 'not-an-ip bad.test', '10.0.0.1 allowed.test', '', '1.2.3.4 2130706433'].join('\n'));
    expect(table.get('allowed.test')?.map(formatIp)).toEqual(['127.0.0.1', '10.0.0.1']);
    expect(table.get('alias.test')?.map(formatIp)).toEqual(['127.0.0.1']);
    expect(table.get('v6.test')?.map(formatIp)).toEqual(['::1']);
    expect(table.has('bad.test')).toBe(false);
    expect(table.size).toBe(3);
  });

  it('loads from disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hosts-'));
    try {
      await writeFile(join(dir, 'hosts'), '127.0.0.1 disk.test\n');
      expect((await loadHostsFile(join(dir, 'hosts'))).get('disk.test')?.map(formatIp)).toEqual(['127.0.0.1']);
      await expect(loadHostsFile(join(dir, 'missing'))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
