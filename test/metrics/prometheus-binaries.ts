import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isCI } from '../helpers/require-docker.js';

const exec = promisify(execFile);

/** True when `name --version` runs. Never throws. */
export async function binaryAvailable(name: string): Promise<boolean> {
  try {
    await exec(name, ['--version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Gate for tests that run Prometheus's binaries: true when all are on PATH; false (skip)
 * when one is missing and CI is not set; throws when CI=true, so the file fails.
 */
export async function requirePrometheusBinaries(...names: ('prometheus' | 'promtool')[]): Promise<boolean> {
  const missing: string[] = [];
  for (const name of names) if (!(await binaryAvailable(name))) missing.push(name);
  if (missing.length === 0) return true;
  if (isCI) throw new Error(`CI=true but ${missing.join(' and ')} is not on PATH; run scripts/ensure-prometheus.sh (Debian package prometheus)`);
  return false;
}
