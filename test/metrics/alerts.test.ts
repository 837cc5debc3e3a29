/**
 * The alerting rules in deploy/prometheus pass `promtool check rules` and their unit tests
 * (`promtool test rules`), and the example prometheus.yml passes `promtool check config`.
 * Needs promtool (scripts/ensure-prometheus.sh); fails when CI=true and it is missing.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { requirePrometheusBinaries } from './prometheus-binaries.js';

const exec = promisify(execFile);
const dir = join(process.cwd(), 'deploy/prometheus');
const hasPromtool = await requirePrometheusBinaries('promtool');

async function promtool(...args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await exec('promtool', args, { cwd: dir, timeout: 60_000 });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message };
  }
}

interface RuleFile {
  groups: { rules: { alert?: string }[] }[];
}
interface RuleTests {
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

const REQUIRED_ALERTS = ['AgentCrashLooping', 'NodeNotReady', 'SchedulingFailuresRising', 'TenantNearQuota', 'AgentOOMKilled', 'ControlPlaneNotReady'];

describe('alert rule files', () => {
  it('define every required alert, and each has a test that expects it to fire and one that expects silence', () => {
    const rules = parse(readFileSync(join(dir, 'alerts.yaml'), 'utf8')) as RuleFile;
    const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined);
    expect([...alerts].sort()).toEqual([...REQUIRED_ALERTS].sort());
    const tests = parse(readFileSync(join(dir, 'alerts.test.yaml'), 'utf8')) as RuleTests;
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      expect(cases.some((c) => c.alertname === alert && c.exp_alerts.length > 0), `${alert} has a firing case`).toBe(true);
      expect(cases.some((c) => c.alertname === alert && c.exp_alerts.length === 0), `${alert} has a silent case`).toBe(true);
    }
  });
});

describe.skipIf(!hasPromtool)('promtool', () => {
  it('check rules accepts alerts.yaml', async () => {
    const r = await promtool('check', 'rules', 'alerts.yaml');
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toMatch(/SUCCESS: 6 rules found/);
  });

  it('test rules passes every unit test in alerts.test.yaml', async () => {
    const r = await promtool('test', 'rules', 'alerts.test.yaml');
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain('SUCCESS');
    expect(r.output).not.toContain('FAILED');
  });

  it('check config accepts the example prometheus.yml', async () => {
    const r = await promtool('check', 'config', 'prometheus.yml');
    expect(r.ok, r.output).toBe(true);
  });
});
