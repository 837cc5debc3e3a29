import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.host).toBe('127.0.0.1');
    expect(c.dataDir.endsWith('/data')).toBe(true);
    expect(c.databaseUrl).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });
  it('names the bad variable', () => {
    expect(() => loadConfig({ AGENT_PLATFORM_PORT: 'eighty' })).toThrow(ConfigError);
    expect(() => loadConfig({ AGENT_PLATFORM_PORT: '99999' })).toThrow(/AGENT_PLATFORM_PORT/);
    expect(() => loadConfig({ AGENT_PLATFORM_ADMIN_TOKEN: 'short' })).toThrow(/AGENT_PLATFORM_ADMIN_TOKEN/);
  });
  it('reads the environment', () => {
    const c = loadConfig({ AGENT_PLATFORM_PORT: '9000', AGENT_PLATFORM_DATABASE_URL: 'postgres://x/y', DOCKER_HOST: 'unix:///tmp/d.sock' });
    expect(c.port).toBe(9000);
    expect(c.databaseUrl).toBe('postgres://x/y');
    expect(c.dockerHost).toBe('unix:///tmp/d.sock');
  });
});
