import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { run } from '../../src/cli/agentctl.js';
import { TenancyPlatform, storeKinds, uid } from './tenancy-harness.js';

const kinds = await storeKinds();
const RATE_CARD = JSON.stringify({ currency: 'EUR', cpuCoreHour: '0.04', memoryGiBHour: '0.01', gpuHour: '2', tenants: { discount: { cpuCoreHour: '0.02' } } });

async function agentctl(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { stdout: { write: (c) => ((out += String(c)), true) }, stderr: { write: (c) => ((err += String(c)), true) }, env: {} });
  return { code, out, err };
}

describe.each(kinds)('usage endpoint, CSV and agentctl usage (%s)', (kind) => {
  let p: TenancyPlatform;
  const clock = new ManualClock(Date.UTC(2026, 4, 10, 8, 0, 0));
  beforeAll(async () => {
    p = await TenancyPlatform.start(kind, { AGENT_PLATFORM_RATE_CARD: RATE_CARD }, { clock });
  }, 60_000);
  afterAll(async () => {
    await p?.close();
  });

  it('bills exactly the Running time at the rate card, per tenant override; rows add up; CSV and agentctl agree', async () => {
    for (const tenant of [uid('bill'), 'discount']) {
      const t0 = clock.now();
      await p.createTenant(tenant);
      const admin = await p.createKey(tenant, 'tenant-admin');
      const a = (await p.createAgent(admin.key, { name: 'half', labels: { team: 'x' }, resources: { cpu: '500m', memory: '2Gi' } })).json.id as string;
      const b = (await p.createAgent(admin.key, { name: 'gpu', labels: { team: 'y' }, resources: { cpu: '1', memory: '1Gi', gpu: 1 } })).json.id as string;
      await p.waitPhase(admin.key, a, 'Running');
      await p.waitPhase(admin.key, b, 'Running');
      clock.advance(1800_000);
      await p.platform.tenancy.meter.tick();
      clock.advance(1800_000);
      await p.expectStatus(200, 'POST', `/api/v1/agents/${a}/stop`, { token: admin.key });
      await p.waitPhase(admin.key, a, 'Stopped');
      clock.advance(1800_000);
      // The meter ticks every interval in real life; gaps over an hour count as clock jumps.
      await p.platform.tenancy.meter.tick();
      clock.advance(1800_000);
      await p.expectStatus(200, 'POST', `/api/v1/agents/${b}/stop`, { token: admin.key });
      await p.waitPhase(admin.key, b, 'Stopped');
      clock.advance(3600_000); // stopped: nothing more accrues
      await p.platform.tenancy.meter.tick();

      const q = `from=${new Date(t0).toISOString()}&to=${new Date(clock.now()).toISOString()}`;
      const usage = (await p.expectStatus(200, 'GET', `/api/v1/tenants/${tenant}/usage?${q}&groupBy=agent`, { token: admin.key })).json;
      const row = (id: string) => usage.rows.find((r: { key: string }) => r.key === id);
      expect(row(a)).toMatchObject({ name: 'half', runSeconds: 3600, cpuCoreSeconds: 1800, memoryGiBSeconds: 7200, gpuSeconds: 0 });
      expect(row(b)).toMatchObject({ name: 'gpu', runSeconds: 7200, cpuCoreSeconds: 7200, memoryGiBSeconds: 7200, gpuSeconds: 7200 });
      const cpuPrice = tenant === 'discount' ? 0.02 : 0.04;
      // a: 0.5 core-h + 2 GiB-h; b: 2 core-h + 2 GiB-h + 2 GPU-h.
      const expected = (0.5 * cpuPrice + 2 * 0.01) + (2 * cpuPrice + 2 * 0.01 + 2 * 2);
      expect(Number(usage.total.cost)).toBeCloseTo(expected, 6);
      expect(usage.currency).toBe('EUR');
      expect(usage.rows.reduce((s: number, r: { costMicros: number }) => s + r.costMicros, 0)).toBe(usage.total.costMicros);

      const byLabel = (await p.expectStatus(200, 'GET', `/api/v1/tenants/${tenant}/usage?${q}&groupBy=label&label=team`, { token: admin.key })).json;
      expect(byLabel.rows.map((r: { key: string }) => r.key)).toEqual(['x', 'y']);
      expect(byLabel.total.costMicros).toBe(usage.total.costMicros);
      const byDay = (await p.expectStatus(200, 'GET', `/api/v1/tenants/${tenant}/usage?${q}&groupBy=day`, { token: admin.key })).json;
      expect(byDay.total.costMicros).toBe(usage.total.costMicros);

      const csv = await p.expectStatus(200, 'GET', `/api/v1/tenants/${tenant}/usage?${q}`, { token: admin.key, headers: { accept: 'text/csv' } });
      expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = csv.text.trim().split('\r\n');
      expect(lines[0]).toBe('agent,name,runSeconds,cpuCoreSeconds,memoryGiBSeconds,gpuSeconds,usedCpuSeconds,cost,currency');
      expect(lines.at(-1)).toBe(`total,,10800,9000,14400,7200,,${usage.total.cost},EUR`);

      // agentctl usage -o csv prints the endpoint's CSV as it is.
      const csvOut = await agentctl(['--server', p.baseUrl, '--token', admin.key, 'usage', '--from', new Date(t0).toISOString(), '--to', new Date(clock.now()).toISOString(), '-o', 'csv']);
      expect(csvOut.err).toBe('');
      expect(csvOut.code).toBe(0);
      expect(csvOut.out.trim().split(/\r?\n/)).toEqual(lines);

      const json = await agentctl(['--server', p.baseUrl, '--token', admin.key, 'usage', '--from', new Date(t0).toISOString(), '--to', new Date(clock.now()).toISOString(), '-o', 'json']);
      expect(json.err).toBe('');
      expect(JSON.parse(json.out).total).toEqual(usage.total);
      const table = await agentctl(['--server', p.baseUrl, '--token', admin.key, 'usage', '--tenant', tenant, '--from', new Date(t0).toISOString(), '--to', new Date(clock.now()).toISOString(), '--group-by', 'label', '--label', 'team']);
      expect(table.code).toBe(0);
      expect(table.out).toMatch(/LABEL\s+RUN-SECONDS/);
      expect(table.out).toContain(usage.total.cost);
      // Members cannot read usage; another tenant's usage is 404.
      const member = await p.createKey(tenant, 'member');
      await p.expectStatus(403, 'GET', `/api/v1/tenants/${tenant}/usage`, { token: member.key });
      await p.expectStatus(404, 'GET', '/api/v1/tenants/default/usage', { token: admin.key });
    }
  }, 60_000);
});
