import { describe, it, expect } from 'vitest';
import { DEFAULT_SERVER, resolveConnectionSettings } from './connection-settings.js';

const file = { server: 'http://file:3', token: 'file-token' };
const env = { AGENTCTL_SERVER: 'http://env:2', AGENT_PLATFORM_URL: 'http://env-fallback:2', AGENTCTL_TOKEN: 'env-token', AGENT_PLATFORM_ADMIN_TOKEN: 'admin-token' };

describe('resolveConnectionSettings', () => {
  it('takes flags over env over file over defaults', () => {
    expect(resolveConnectionSettings({ flags: { server: 'http://flag:1', token: 'flag-token' }, env, file })).toMatchObject({ server: 'http://flag:1', token: 'flag-token', serverSource: '--server', tokenSource: '--token' });
    expect(resolveConnectionSettings({ flags: {}, env, file })).toMatchObject({ server: 'http://env:2', token: 'env-token' });
    expect(resolveConnectionSettings({ flags: {}, env: {}, file, filePath: '/c.yaml' })).toMatchObject({ server: 'http://file:3', token: 'file-token', serverSource: 'config file /c.yaml' });
    expect(resolveConnectionSettings({ flags: {}, env: {}, file: {} })).toEqual({ server: DEFAULT_SERVER, serverSource: 'default', token: undefined, tokenSource: undefined });
  });

  it('falls back to the platform-wide env names when the agentctl ones are unset or empty', () => {
    const s = resolveConnectionSettings({ flags: {}, env: { AGENTCTL_SERVER: '', AGENT_PLATFORM_URL: 'http://p:4', AGENT_PLATFORM_ADMIN_TOKEN: 'adm' }, file });
    expect(s).toMatchObject({ server: 'http://p:4', token: 'adm', tokenSource: 'AGENT_PLATFORM_ADMIN_TOKEN' });
  });

  it('mixes sources per field', () => {
    expect(resolveConnectionSettings({ flags: { token: 't' }, env: {}, file })).toMatchObject({ server: 'http://file:3', token: 't' });
  });

  it('strips trailing slashes and rejects non-HTTP URLs, naming the source', () => {
    expect(resolveConnectionSettings({ flags: { server: 'https://h/base/' }, env: {}, file: {} }).server).toBe('https://h/base');
    expect(() => resolveConnectionSettings({ flags: {}, env: { AGENTCTL_SERVER: 'not a url' }, file: {} })).toThrow(/AGENTCTL_SERVER/);
    expect(() => resolveConnectionSettings({ flags: { server: 'ftp://h' }, env: {}, file: {} })).toThrow(/--server must start with http/);
  });
});
