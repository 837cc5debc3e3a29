import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { ensureBusyboxImage } from '../helpers/busybox-image.js';
import { TestPlatform, uniqueName, type AgentJson, type ApiResponse } from './harness.js';

const hasDocker = await requireDocker();

interface ErrorJson {
  error: { code: string; message: string; details?: unknown; requestId?: string };
}

const BODY_LIMIT_BYTES = 4096;

/** Asserts the one error shape, the status and the code; returns the message. */
function expectError(res: ApiResponse, status: number, code: string): string {
  expect(res.status, res.text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = res.json as ErrorJson;
  expect(body.error, res.text).toBeDefined();
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(5);
  expect(body.error.requestId).toBe(res.headers.get('x-request-id'));
  return body.error.message;
}

describe.skipIf(!hasDocker)('bad input is a clear 4xx, never a 500', () => {
  let p: TestPlatform;
  let busybox: string;
  const valid = (): Record<string, unknown> => ({ name: uniqueName('bad'), image: busybox, command: ['true'] });
  const post = (body: unknown): Promise<ApiResponse> => p.request('POST', '/api/v1/agents', { body });

  beforeAll(async () => {
    busybox = await ensureBusyboxImage();
    p = await TestPlatform.start({ env: { AGENT_PLATFORM_BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) } });
  }, 120_000);

  afterAll(async () => {
    await p?.close();
  });

  it('malformed JSON -> 400 INVALID_JSON', async () => {
    const msg = expectError(await p.request('POST', '/api/v1/agents', { rawBody: '{"name": "x", ' }), 400, 'INVALID_JSON');
    expect(msg).toMatch(/JSON/);
    expectError(await p.request('POST', '/api/v1/agents', { rawBody: 'not json at all' }), 400, 'INVALID_JSON');
  });

  it('empty body on POST -> 400', async () => {
    const withType = await p.request('POST', '/api/v1/agents', { rawBody: '' });
    expect(withType.status, withType.text).toBe(400);
    expect(['INVALID_JSON', 'BODY_REQUIRED']).toContain((withType.json as ErrorJson).error.code);
    const noType = await p.request('POST', '/api/v1/agents', {});
    expect(noType.status, noType.text).toBe(400);
    expect((noType.json as ErrorJson).error.message).toMatch(/body/i);
    // JSON null and arrays are not an agent either.
    expectError(await p.request('POST', '/api/v1/agents', { rawBody: 'null' }), 400, 'BODY_REQUIRED');
    expect(expectError(await p.request('POST', '/api/v1/agents', { rawBody: '[]' }), 400, 'VALIDATION_FAILED')).toMatch(/^body: /);
  });

  it('wrong types -> 400 VALIDATION_FAILED naming the field', async () => {
    expect(expectError(await post({ ...valid(), name: 42 }), 400, 'VALIDATION_FAILED')).toContain('name');
    expect(expectError(await post({ ...valid(), resources: { cpu: true } }), 400, 'VALIDATION_FAILED')).toContain('resources.cpu');
    expect(expectError(await post({ ...valid(), command: 'echo hi' }), 400, 'VALIDATION_FAILED')).toContain('command');
    expect(expectError(await post({ ...valid(), env: { A: 1 } }), 400, 'VALIDATION_FAILED')).toContain('env.A');
    expect(expectError(await post({ ...valid(), restartPolicy: 'Sometimes' }), 400, 'VALIDATION_FAILED')).toContain('restartPolicy');
    expect(expectError(await post({ ...valid(), name: 'Not_A_DNS_Name' }), 400, 'VALIDATION_FAILED')).toContain('name');
    expect(expectError(await post({ ...valid(), timeoutSeconds: 1.5 }), 400, 'VALIDATION_FAILED')).toContain('timeoutSeconds');
    const missing = expectError(await post({ image: busybox }), 400, 'VALIDATION_FAILED');
    expect(missing).toContain('name');
    // Every bad field is named at once, with structured details.
    const many = await post({ name: 7, image: '' });
    const message = expectError(many, 400, 'VALIDATION_FAILED');
    expect(message).toContain('name');
    expect(message).toContain('image');
    const fields = ((many.json as ErrorJson).error.details as { fields: { field: string }[] }).fields.map((f) => f.field);
    expect(fields).toEqual(expect.arrayContaining(['name', 'image']));
  });

  it('unknown fields -> 400 naming the field', async () => {
    expect(expectError(await post({ ...valid(), imagePullPolicy: 'Always' }), 400, 'VALIDATION_FAILED')).toContain('imagePullPolicy');
    expect(expectError(await post({ ...valid(), resources: { cpu: '100m', memroy: '1Gi' } }), 400, 'VALIDATION_FAILED')).toContain('memroy');
  });

  it('bad quantities and limits below requests -> 400', async () => {
    for (const cpu of ['12x', '-1', 'abc', '']) {
      const msg = expectError(await post({ ...valid(), resources: { cpu } }), 400, 'VALIDATION_FAILED');
      expect(msg, `cpu ${JSON.stringify(cpu)}`).toContain('resources.cpu');
    }
    for (const memory of ['12x', '-1', 'abc', '1Zi']) {
      const msg = expectError(await post({ ...valid(), resources: { memory } }), 400, 'VALIDATION_FAILED');
      expect(msg, `memory ${JSON.stringify(memory)}`).toContain('resources.memory');
    }
    expectError(await post({ ...valid(), resources: { cpu: -1 } }), 400, 'VALIDATION_FAILED');
    expect(expectError(await post({ ...valid(), resources: { memory: '256Mi', limits: { memory: '128Mi' } } }), 400, 'VALIDATION_FAILED')).toContain('resources.limits.memory');
    expect(expectError(await post({ ...valid(), resources: { cpu: '1', limits: { cpu: '500m' } } }), 400, 'VALIDATION_FAILED')).toContain('resources.limits.cpu');
  });

  it('a duplicate name -> 409 AGENT_NAME_TAKEN', async () => {
    const body = valid();
    const first = await post(body);
    expect(first.status, first.text).toBe(201);
    const msg = expectError(await post({ ...body, command: ['sleep', '1'] }), 409, 'AGENT_NAME_TAKEN');
    expect(msg).toContain(String(body.name));
    await p.waitForPhase((first.json as AgentJson).id, 'Succeeded');
  }, 30_000);

  it('an oversize body -> 413 PAYLOAD_TOO_LARGE', async () => {
    const big = { ...valid(), env: { BIG: 'x'.repeat(BODY_LIMIT_BYTES * 2) } };
    expectError(await post(big), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('bad and unknown ids in the path', async () => {
    for (const path of ['/api/v1/agents/NOT-AN-ID', '/api/v1/agents/x', `/api/v1/agents/${'a'.repeat(41)}`]) {
      expect(expectError(await p.request('GET', path), 400, 'VALIDATION_FAILED')).toContain('id');
    }
    expectError(await p.request('DELETE', '/api/v1/agents/Bad!Id'), 400, 'VALIDATION_FAILED');
    expectError(await p.request('POST', '/api/v1/agents/UPPER/stop'), 400, 'VALIDATION_FAILED');
    const unknown = 'aaaaaaaaaaaaaaaaaaaa';
    for (const [method, path] of [
      ['GET', `/api/v1/agents/${unknown}`],
      ['DELETE', `/api/v1/agents/${unknown}`],
      ['POST', `/api/v1/agents/${unknown}/stop`],
      ['POST', `/api/v1/agents/${unknown}/start`],
      ['GET', `/api/v1/agents/${unknown}/logs`],
      ['GET', `/api/v1/agents/${unknown}/events`],
    ] as const) {
      expect(expectError(await p.request(method, path), 404, 'AGENT_NOT_FOUND'), `${method} ${path}`).toContain(unknown);
    }
  });

  it('missing or invalid token -> 401 UNAUTHENTICATED with a clear message', async () => {
    expect(expectError(await p.request('GET', '/api/v1/agents', { token: null }), 401, 'UNAUTHENTICATED')).toMatch(/Authorization/);
    expect(expectError(await p.request('GET', '/api/v1/agents', { token: 'wrong-token-wrong-token' }), 401, 'UNAUTHENTICATED')).toMatch(/invalid/i);
    expect(expectError(await p.request('GET', '/api/v1/agents', { token: null, headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401, 'UNAUTHENTICATED')).toMatch(/Bearer/);
    // Authentication comes before validation: nothing about the body leaks.
    expectError(await p.request('POST', '/api/v1/agents', { token: null, body: { nonsense: true } }), 401, 'UNAUTHENTICATED');
    expectError(await p.request('GET', '/api/v1/agents/aaaaaaaaaaaaaaaaaaaa', { token: null }), 401, 'UNAUTHENTICATED');
  });

  it('wrong content type -> 415', async () => {
    const msg = expectError(
      await p.request('POST', '/api/v1/agents', { rawBody: 'name=x&image=y', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    expect(msg).toContain('application/json');
    expectError(await p.request('POST', '/api/v1/agents', { rawBody: JSON.stringify(valid()), headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('unknown route -> 404 ROUTE_NOT_FOUND', async () => {
    expect(expectError(await p.request('GET', '/api/v1/nope'), 404, 'ROUTE_NOT_FOUND')).toContain('/api/v1/nope');
    expectError(await p.request('PUT', '/api/v1/agents'), 404, 'ROUTE_NOT_FOUND');
    expectError(await p.request('GET', '/api/v2/agents', { token: null }), 404, 'ROUTE_NOT_FOUND');
  });

  it('bad query parameters -> 400 naming the parameter', async () => {
    expect(expectError(await p.request('GET', '/api/v1/agents?phase=Nope'), 400, 'VALIDATION_FAILED')).toContain('Nope');
    expect(expectError(await p.request('GET', '/api/v1/agents?limit=0'), 400, 'VALIDATION_FAILED')).toContain('limit');
    expect(expectError(await p.request('GET', '/api/v1/agents?limit=abc'), 400, 'VALIDATION_FAILED')).toContain('limit');
    expect(expectError(await p.request('GET', '/api/v1/agents?limit=5000'), 400, 'VALIDATION_FAILED')).toContain('limit');
    expect(expectError(await p.request('GET', '/api/v1/agents?label=noequals'), 400, 'VALIDATION_FAILED')).toContain('label');
    expect(expectError(await p.request('GET', '/api/v1/agents?bogus=1'), 400, 'VALIDATION_FAILED')).toContain('bogus');
  });

  it('a bad cursor and bad log queries are 4xx, not 500', async () => {
    for (const c of ['not-a-real-cursor', '%%%', encodeURIComponent('{"x":1}')]) {
      const cursor = await p.request<ErrorJson>('GET', `/api/v1/agents?cursor=${c}`);
      expect([400, 422], cursor.text).toContain(cursor.status);
      expect(cursor.json.error.message).toMatch(/cursor/);
    }
    const a = await p.create(valid());
    for (const q of ['tail=-1', 'tail=abc', 'since=yesterday', 'follow=maybe', 'timestamps=1']) {
      const res = await p.request('GET', `/api/v1/agents/${a.id}/logs?${q}`);
      expectError(res, 400, 'VALIDATION_FAILED');
    }
    await p.waitForPhase(a.id, 'Succeeded');
  }, 30_000);

  it('a bad Idempotency-Key -> 400', async () => {
    expect(expectError(await p.request('POST', '/api/v1/agents', { body: valid(), headers: { 'idempotency-key': 'has space' } }), 400, 'VALIDATION_FAILED')).toContain('Idempotency-Key');
  });
});
