import { readFileSync } from 'node:fs';

/**
 * The package version. Read from package.json at run time: src/cli and dist/cli sit at the
 * same depth, so one relative path serves both tsx and the compiled build.
 */
export function clientVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
