/**
 * docs/api.md's error table against src/api/error-handler.ts: every code the handler names
 * is documented, with the status the handler really gives it (computed by the handler's
 * own statusFor and the real error classes, not copied). A code added to the handler, or
 * a mapping changed, without the docs fails here.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { statusFor } from '../../src/api/error-handler.js';
import { DomainError, InputError, UnavailableError } from '../../src/domain/errors.js';
import { DockerApiError } from '../../src/runtime/docker/docker-errors.js';
import { KubeApiError } from '../../src/runtime/kubernetes/kube-client.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** status -> codes of each row of the "## Errors" table. */
async function documentedErrors(): Promise<{ section: string; rows: { status: number; codes: string[] }[] }> {
  const doc = await readFile(join(REPO_ROOT, 'docs/api.md'), 'utf8');
  const start = doc.indexOf('\n## Errors');
  expect(start, 'docs/api.md has an "## Errors" section').toBeGreaterThanOrEqual(0);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end === -1 ? undefined : end);
  const rows = [...section.matchAll(/^\| (\d{3}) \| ([^|]+) \|/gm)].map((m) => ({
    status: Number(m[1]),
    codes: [...m[2]!.matchAll(/`([A-Z][A-Z0-9_<>]*)`/g)].map((c) => c[1]!),
  }));
  return { section, rows };
}

const statusesOf = (rows: { status: number; codes: string[] }[], code: string): number[] => rows.filter((r) => r.codes.includes(code)).map((r) => r.status);

describe('docs/api.md documents every error code of the error handler', () => {
  it('each code named in src/api/error-handler.ts has a row with the status the handler gives it', async () => {
    const { section, rows } = await documentedErrors();
    expect(rows.length).toBeGreaterThan(20);
    const source = await readFile(join(REPO_ROOT, 'src/api/error-handler.ts'), 'utf8');

    // Fastify's errors: the handler's table gives status and code together.
    const fastify = [...source.matchAll(/\{ status: (\d{3}), code: '([A-Z_]+)'/g)].map((m) => ({ code: m[2]!, status: Number(m[1]) }));
    expect(fastify.length).toBeGreaterThanOrEqual(5);
    // Domain errors: the status comes from statusFor with the class that carries the code.
    const domain: { code: string; status: number }[] = [
      ...['VALIDATION_FAILED', 'BODY_REQUIRED'].map((code) => ({ code, status: statusFor(new InputError('x', undefined, code)) })),
      ...['RATE_LIMITED', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'].map((code) => ({ code, status: statusFor(new DomainError(code, 'x')) })),
      { code: 'RUNTIME_ERROR', status: statusFor(new DockerApiError(500, { operation: 'logs', nodeId: 'n', endpoint: 'unix:///x' }, 'boom')) },
      { code: 'INTERNAL', status: 500 },
    ];
    const checked = new Set([...fastify, ...domain].map((c) => c.code));
    // Nothing in the handler escapes the list above (BAD_REQUEST is Fastify's fallback code,
    // KUBERNETES_ a prefix: both checked separately below).
    const named = new Set([...source.matchAll(/'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!));
    const unchecked = [...named].filter((c) => !checked.has(c) && c !== 'BAD_REQUEST' && c !== 'KUBERNETES_');
    expect(unchecked, 'codes in error-handler.ts this test does not know; add them here and to docs/api.md').toEqual([]);

    for (const { code, status } of [...fastify, ...domain]) expect(statusesOf(rows, code), `docs/api.md row for ${code}`).toContain(status);
    expect(section).toContain('`BAD_REQUEST`');
  });

  it('Kubernetes API errors (answers and transport failures) are the documented 502 rows', async () => {
    const { rows } = await documentedErrors();
    const answered = new KubeApiError(403, 'Forbidden', 'pods is forbidden');
    const unreachable = new KubeApiError(0, '', 'connect ECONNREFUSED');
    expect(answered.code).toBe('KUBERNETES_FORBIDDEN');
    expect(unreachable.code).toBe('KUBERNETES_UNAVAILABLE');
    expect(statusesOf(rows, 'KUBERNETES_<REASON>')).toEqual([statusFor(answered)]);
    expect(statusesOf(rows, 'KUBERNETES_UNAVAILABLE')).toEqual([statusFor(unreachable)]);
    expect(statusFor(answered)).toBe(502);
  });

  it('the Docker transport errors are the documented 503 rows', async () => {
    const { rows } = await documentedErrors();
    for (const code of ['RUNTIME_UNAVAILABLE', 'RUNTIME_TIMEOUT', 'STORE_UNAVAILABLE']) {
      expect(statusesOf(rows, code), code).toEqual([statusFor(new UnavailableError(code, 'x'))]);
    }
  });
});
