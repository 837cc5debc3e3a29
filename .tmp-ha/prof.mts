import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from '../test/crash/platform-process.js';
import { spawn } from 'node:child_process';
const TOKEN = 'x'.repeat(24);
const db = `ap_ha_prof_${randomBytes(3).toString('hex')}`;
const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' }); await c.connect(); await c.query(`create database "${db}"`); await c.end();
const prefix = `ap-test-prof-${randomBytes(3).toString('hex')}:`;
const port = await freePort();
const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/hawork/prof', '--import', 'tsx', 'src/main.ts', 'serve'], { cwd: '/work/main', env: { ...process.env, AGENT_PLATFORM_PORT: String(port),
  AGENT_PLATFORM_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${db}`, AGENT_PLATFORM_REDIS_URL: 'redis://127.0.0.1:6379', AGENT_PLATFORM_REDIS_PREFIX: prefix,
  AGENT_PLATFORM_LEASE_TTL_MS: '2000', AGENT_PLATFORM_DATA_DIR: await mkdtemp(join(tmpdir(), 'ap-prof-')), AGENT_PLATFORM_ADMIN_TOKEN: TOKEN, AGENT_PLATFORM_LOG_LEVEL: 'warn', AGENT_PLATFORM_RESYNC_INTERVAL_MS: '1000' }, stdio: ['ignore', 'inherit', 'inherit'] });
const exited = new Promise((r) => child.once('exit', r));
const p = { baseUrl: `http://127.0.0.1:${port}`, stop: async () => { child.kill('SIGINT'); await exited; }, output: () => '' };
for (;;) { try { const r = await fetch(`${p.baseUrl}/ready`); if (r.status === 200) break; } catch {} await sleep(200); }

const t0 = Date.now();
await Promise.all(Array.from({ length: 30 }, async (_, i) => {
  const r = await fetch(`${p.baseUrl}/api/v1/agents`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: `p-${i}`, image: 'agent-platform/busybox:latest', command: ['sleep', '300'], restartPolicy: 'Always', resources: { cpu: '10m', memory: '16Mi' } }) });
  await r.text();
}));
for (;;) {
  const r = await fetch(`${p.baseUrl}/api/v1/agents?limit=1000`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const items = ((await r.json()) as { items: { status: { phase: string } }[] }).items;
  if (items.every((a) => a.status.phase === 'Running')) break;
  await sleep(200);
}
console.log('all running after', Date.now() - t0);
await sleep(3000);
for (const id of (((await (await fetch(`${p.baseUrl}/api/v1/agents?limit=1000`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { items: { id: string }[] }).items)) {
  await (await fetch(`${p.baseUrl}/api/v1/agents/${id.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } })).text();
}
await p.stop();
console.log(p.output());
const c2 = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' }); await c2.connect(); await c2.query(`drop database "${db}" with (force)`); await c2.end();
