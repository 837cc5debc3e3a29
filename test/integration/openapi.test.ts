import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDocker } from '../helpers/require-docker.js';
import { TestPlatform } from './harness.js';

const hasDocker = await requireDocker();

interface ReadyJson {
  status: string;
  checks: Record<string, { ok: boolean; error?: string }>;
  error?: { code: string; message: string };
}

describe.skipIf(!hasDocker)('health, readiness, OpenAPI and docs', () => {
  let p: TestPlatform;
  /** A second platform whose only runtime points at a socket nobody serves. */
  let broken: TestPlatform;

  beforeAll(async () => {
    [p, broken] = await Promise.all([TestPlatform.start(), TestPlatform.start({ config: { dockerHost: 'unix:///tmp/agent-platform-nope.sock' } })]);
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([p?.close(), broken?.close()]);
  });

  it('/health answers 200 without a token', async () => {
    const res = await p.request('GET', '/health', { token: null });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: 'ok' });
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('/ready is 200 with every check when store and runtime answer', async () => {
    const res = await p.request<ReadyJson>('GET', '/ready', { token: null });
    expect(res.status, res.text).toBe(200);
    expect(res.json.status).toBe('ready');
    expect(res.json.checks.store).toEqual({ ok: true });
    expect(res.json.checks[`runtime:${p.config.nodeName}`]).toEqual({ ok: true });
  });

  it('/ready is 503 naming the runtime when dockerd is unreachable', async () => {
    const t0 = Date.now();
    const res = await broken.request<ReadyJson>('GET', '/ready', { token: null });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(res.status, res.text).toBe(503);
    expect(res.json.status).toBe('not ready');
    expect(res.json.checks.store).toEqual({ ok: true });
    const runtimeCheck = res.json.checks[`runtime:${broken.config.nodeName}`];
    expect(runtimeCheck?.ok).toBe(false);
    expect(runtimeCheck?.error).toBeTruthy();
    expect(res.json.error?.code).toBe('NOT_READY');
    expect(res.json.error?.message).toContain(`runtime:${broken.config.nodeName}`);
    // Liveness is not readiness: the process itself is fine.
    expect((await broken.request('GET', '/health', { token: null })).status).toBe(200);
  });

  it('/openapi.json is an OpenAPI 3.1 document describing the agent API', async () => {
    const res = await p.request<Record<string, any>>('GET', '/openapi.json', { token: null });
    expect(res.status).toBe(200);
    const doc = res.json;
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.info.title).toBeTruthy();
    const agents = doc.paths['/api/v1/agents'];
    expect(agents.post.requestBody.required).toBe(true);
    const bodySchema = agents.post.requestBody.content['application/json'].schema;
    const resolved = bodySchema.$ref ? doc.components.schemas[bodySchema.$ref.replace('#/components/schemas/', '')] : bodySchema;
    expect(resolved.type).toBe('object');
    expect(resolved.required).toEqual(expect.arrayContaining(['name', 'image']));
    expect(Object.keys(resolved.properties)).toEqual(expect.arrayContaining(['name', 'image', 'command', 'resources', 'restartPolicy', 'timeoutSeconds']));
    expect(resolved.additionalProperties).toBe(false);
    expect(doc.components.schemas.CreateAgentRequest).toBeDefined();
    expect(doc.components.schemas.CreateAgentRequest.properties.name).toBeDefined();
    expect(agents.post.responses['201']).toBeDefined();
    expect(agents.get.parameters.map((x: { name: string }) => x.name)).toEqual(expect.arrayContaining(['phase', 'label', 'limit', 'cursor']));
    expect(doc.paths['/api/v1/agents/{id}'].get.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'id', in: 'path', required: true })]));
    for (const path of ['/api/v1/agents/{id}/logs', '/api/v1/agents/{id}/events', '/api/v1/agents/{id}/stop', '/api/v1/agents/{id}/start', '/health', '/ready']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    // Every $ref resolves inside the document.
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      const name = /#\/components\/schemas\/([^"]+)/.exec(ref)?.[1];
      expect(name, ref).toBeDefined();
      expect(doc.components.schemas[name!], ref).toBeDefined();
    }
  });

  it('/docs serves the Swagger UI page', async () => {
    const res = await fetch(`${p.baseUrl}/docs`, { redirect: 'follow' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toMatch(/<html/i);
    expect(html).toMatch(/swagger/i);
  });
});
