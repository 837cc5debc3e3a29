import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFileLocation, parseConfigFile, readConfigFile } from './config-file.js';

describe('configFileLocation', () => {
  it('prefers --config, then AGENTCTL_CONFIG, then XDG_CONFIG_HOME, then HOME', () => {
    const env = { AGENTCTL_CONFIG: '/e/c.yaml', XDG_CONFIG_HOME: '/xdg', HOME: '/home/u' };
    expect(configFileLocation(env, '/flag.yaml')).toEqual({ path: '/flag.yaml', explicit: true });
    expect(configFileLocation(env)).toEqual({ path: '/e/c.yaml', explicit: true });
    expect(configFileLocation({ XDG_CONFIG_HOME: '/xdg', HOME: '/home/u' })).toEqual({ path: '/xdg/agentctl/config.yaml', explicit: false });
    expect(configFileLocation({ HOME: '/home/u' })).toEqual({ path: '/home/u/.config/agentctl/config.yaml', explicit: false });
    expect(configFileLocation({})).toBeUndefined();
  });
});

describe('parseConfigFile', () => {
  it('reads server and token and ignores keys it does not know yet', () => {
    expect(parseConfigFile('server: http://h:1\ntoken: abc\ncontexts: []\n', 'c.yaml')).toEqual({ server: 'http://h:1', token: 'abc' });
    expect(parseConfigFile('', 'c.yaml')).toEqual({});
  });

  it('names the file and the key when something is wrong', () => {
    expect(() => parseConfigFile('token: 123\n', '/x/c.yaml')).toThrow(/\/x\/c\.yaml: "token" must be a string/);
    expect(() => parseConfigFile('- a\n- b\n', '/x/c.yaml')).toThrow(/\/x\/c\.yaml must be a mapping/);
    expect(() => parseConfigFile('server: [unclosed\n', '/x/c.yaml')).toThrow(/\/x\/c\.yaml is not valid YAML/);
  });
});

describe('readConfigFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agentctl-config-'));
    await mkdir(join(dir, 'agentctl'));
    await writeFile(join(dir, 'agentctl', 'config.yaml'), 'server: http://from-file:9\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads an existing file', async () => {
    expect(await readConfigFile({ path: join(dir, 'agentctl', 'config.yaml'), explicit: false })).toEqual({ server: 'http://from-file:9' });
  });

  it('treats a missing default file as empty but a missing named file as an error', async () => {
    expect(await readConfigFile({ path: join(dir, 'nope.yaml'), explicit: false })).toEqual({});
    await expect(readConfigFile({ path: join(dir, 'nope.yaml'), explicit: true })).rejects.toThrow(/cannot read config file .*nope\.yaml/);
  });
});
