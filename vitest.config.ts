import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Integration tests start real containers and databases: generous, not tight.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores here; Docker-heavy files in parallel still help, within reason.
    maxWorkers: 4,
    reporters: ['default'],
  },
});
