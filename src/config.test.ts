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
  it('accrues usage every 5 minutes by default and refuses an accrual interval at or above the longest step', () => {
    expect(loadConfig({}).usageAccrualIntervalMs).toBe(300_000);
    expect(() => loadConfig({ AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS: '3600000' })).toThrow(/AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS \(3600000\) must be below AGENT_PLATFORM_USAGE_MAX_STEP_MS/);
    expect(loadConfig({ AGENT_PLATFORM_USAGE_ACCRUAL_INTERVAL_MS: '60000', AGENT_PLATFORM_USAGE_MAX_STEP_MS: '120000' }).usageAccrualIntervalMs).toBe(60_000);
  });
  it('reads the environment', () => {
    const c = loadConfig({ AGENT_PLATFORM_PORT: '9000', AGENT_PLATFORM_DATABASE_URL: 'postgres://x/y', DOCKER_HOST: 'unix:///tmp/d.sock' });
    expect(c.port).toBe(9000);
    expect(c.databaseUrl).toBe('postgres://x/y');
    expect(c.dockerHost).toBe('unix:///tmp/d.sock');
  });
});
