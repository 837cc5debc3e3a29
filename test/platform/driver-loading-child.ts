// Child of driver-loading.test.ts: a platform whose pool is simulated nodes only runs an
// agent through a few usage-sampling rounds, then prints which driver modules Node loaded.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config.js';
import { buildPlatform } from '../../src/platform.js';
import { simulatedPlatformEnv } from '../helpers/simulated-platform-env.js';

const TOKEN = 'driver-loading-test-token';
const dataDir = mkdtempSync(join(tmpdir(), 'ap-driver-loading-'));
const platform = await buildPlatform(
  loadConfig(
    simulatedPlatformEnv({ dataDir, token: TOKEN, nodes: { count: 3, shape: { cpu: '4', memory: '8Gi' } }, env: { AGENT_PLATFORM_USAGE_INTERVAL_MS: '100' } }),
  ),
);
let phase = '';
try {
  await platform.start();
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const created = await platform.app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'sim', image: 'agent-platform/sim:latest' } });
  const id = (created.json() as { id: string }).id;
  for (let i = 0; i < 100 && phase !== 'Running'; i++) {
    await sleep(50);
    phase = ((await platform.app.inject({ method: 'GET', url: `/api/v1/agents/${id}`, headers })).json() as { status: { phase: string } }).status.phase;
  }
  await sleep(500); // several usage-sampling rounds over the Running agent
} finally {
  await platform.close();
  rmSync(dataDir, { recursive: true, force: true });
}
const loaded = Object.keys(createRequire(import.meta.url).cache)
  .map((path) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1])
  .filter((name): name is string => name !== undefined);
process.stdout.write(JSON.stringify({ phase, modules: [...new Set(loaded)].sort() }));
