/**
 * deploy/grafana/agent-platform.json is a valid Grafana dashboard whose queries name only
 * metrics the platform exposes (its registry's series names, cAdvisor names included) or
 * Prometheus's own `up`. A renamed metric breaks this test instead of a panel.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PlatformMetrics } from '../../src/metrics/platform-metrics.js';

interface Target {
  expr: string;
  refId: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
}
interface Dashboard {
  __inputs: { name: string; pluginId: string; type: string }[];
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; query: { query: string } | string; datasource?: { uid?: string } }[] };
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** Metric names a PromQL expression selects (not functions, keywords, label names or variables). */
function metricNamesIn(expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""'); // string literals (label values, regexes)
  e = e.replace(/\{[^}]*\}/g, ' '); // label matchers
  e = e.replace(/\[[^\]]*\]/g, ' '); // range and subquery selectors
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  e = e.replace(/\boffset\s+-?[0-9a-z]+/g, ' ');
  const names: string[] = [];
  for (const m of e.matchAll(/[$]?[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const before = e[m.index - 1] ?? '';
    if (word.startsWith('$') || /[0-9.]/.test(before)) continue; // variables; exponents like 1e3
    if (KEYWORDS.has(word.toLowerCase())) continue;
    if (e.slice(m.index + word.length).trimStart().startsWith('(')) continue; // function call
    names.push(word);
  }
  return names;
}

const dashboard = JSON.parse(readFileSync(join(process.cwd(), 'deploy/grafana/agent-platform.json'), 'utf8')) as Dashboard;
const exposed = new Set([...new PlatformMetrics().seriesNames(), 'up']);

describe('metricNamesIn', () => {
  it('finds metric names and skips functions, keywords, label lists, strings, ranges and variables', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.99, sum by (le, route) (rate(http_bucket{route=~"/api.*"}[$__rate_interval]))) / on (x) group_left (y) other_metric > 1e3 or absent(up offset 5m)',
      ),
    ).toEqual(['http_bucket', 'other_metric', 'up']);
    expect(metricNamesIn('sum(max by (agent) (container_spec_cpu_quota{agent=~"$agent"} / container_spec_cpu_period))')).toEqual([
      'container_spec_cpu_quota',
      'container_spec_cpu_period',
    ]);
  });
});

describe('Grafana dashboard deploy/grafana/agent-platform.json', () => {
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);

  it('is an importable dashboard: schema version, datasource input, unique ids, layout within 24 columns', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.gridPos.w * p.gridPos.h, p.title).toBeGreaterThan(0);
    }
    // No two panels overlap.
    for (const [i, a] of dashboard.panels.entries()) {
      for (const b of dashboard.panels.slice(i + 1)) {
        const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it('has the cluster, tenant, agent, scheduling and HTTP rows and an $agent variable', () => {
    expect(rows).toEqual(['Cluster overview', 'Per-tenant usage', 'Per-agent CPU and memory', 'Scheduling and reconcile latency', 'HTTP latency']);
    expect(dashboard.templating.list.map((v) => v.name)).toContain('agent');
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    expect(exprs).toMatch(/histogram_quantile\(0\.5, sum by \(le\) \(rate\(agent_platform_scheduling_duration_seconds_bucket/);
    expect(exprs).toMatch(/histogram_quantile\(0\.99, sum by \(le\) \(rate\(agent_platform_scheduling_duration_seconds_bucket/);
    expect(exprs).toMatch(/agent_platform_http_request_duration_seconds_bucket/);
    expect(exprs).toMatch(/\{agent=~"\$agent"\}/);
  });

  it('queries through the ${DS_PROMETHEUS} datasource everywhere', () => {
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
      for (const t of p.targets ?? []) expect(t.datasource?.uid ?? '${DS_PROMETHEUS}', p.title).toBe('${DS_PROMETHEUS}');
    }
    for (const v of dashboard.templating.list) expect(v.datasource?.uid, v.name).toBe('${DS_PROMETHEUS}');
  });

  it('names only metrics the platform exposes, in every panel query and variable', () => {
    let checked = 0;
    for (const p of panels) {
      expect(p.targets?.length, `${p.title} has queries`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        const names = metricNamesIn(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) {
          expect(exposed.has(n), `${p.title} (${t.refId}) uses ${n}, which the platform does not expose`).toBe(true);
          checked++;
        }
      }
    }
    for (const v of dashboard.templating.list) {
      const query = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(query);
      expect(m, `${v.name}: ${query}`).not.toBeNull();
      expect(exposed.has(m![1]!), `variable ${v.name} uses ${m![1]}`).toBe(true);
    }
    expect(checked).toBeGreaterThan(30);
  });
});
