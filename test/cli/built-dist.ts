import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Fails unless `dist/` holds a compile of every current `src/` file (what tsconfig.build.json
 * compiles: src without *.test.ts). The bins (bin/agentctl.js, bin/agent-platform.js) load
 * dist/, so a test of them against a stale or missing build would pass or fail for the
 * wrong code. `make test` builds first; run `make build` before running such a file alone.
 */
export async function requireFreshDist(): Promise<void> {
  const srcRoot = join(REPO_ROOT, 'src');
  const entries = await readdir(srcRoot, { withFileTypes: true, recursive: true });
  const problems: string[] = [];
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.test.ts') || e.name.endsWith('.d.ts')) continue;
    const source = join(e.parentPath, e.name);
    const rel = relative(srcRoot, source);
    const built = join(REPO_ROOT, 'dist', rel.replace(/\.ts$/, '.js'));
    const [srcStat, builtStat] = await Promise.all([stat(source), stat(built).catch(() => undefined)]);
    if (!builtStat) problems.push(`dist/${relative(join(REPO_ROOT, 'dist'), built)} is missing`);
    else if (builtStat.mtimeMs < srcStat.mtimeMs) problems.push(`src/${rel} is newer than its build`);
  }
  if (problems.length > 0) {
    throw new Error(
      `dist/ does not match src/ (${problems.length} file(s): ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}); ` +
        'run `make build` (npm run build) first; `make test` does',
    );
  }
}
