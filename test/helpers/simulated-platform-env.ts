/**
 * The environment of a quiet in-process platform on SQLite in `dataDir` whose node pool is
 * simulated: a random port, no logs, no rate limit. `nodes` is one entry of
 * AGENT_PLATFORM_NODES (count, shape, ...); `env` overrides or adds AGENT_PLATFORM_* values.
 */
export function simulatedPlatformEnv(o: { dataDir: string; token: string; nodes: Record<string, unknown>; env?: Record<string, string> }): Record<string, string> {
  return {
    AGENT_PLATFORM_DATA_DIR: o.dataDir,
    AGENT_PLATFORM_ADMIN_TOKEN: o.token,
    AGENT_PLATFORM_PORT: '0',
    AGENT_PLATFORM_LOG_LEVEL: 'silent',
    AGENT_PLATFORM_RATE_LIMIT_RPS: '0',
    AGENT_PLATFORM_NODES: JSON.stringify([{ driver: 'simulated', ...o.nodes }]),
    ...o.env,
  };
}
