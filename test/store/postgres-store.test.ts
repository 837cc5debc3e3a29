import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/domain/errors.js';
import { openStore } from '../../src/store/open-store.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import type { NewAgent } from '../../src/store/store.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { storeConformance } from '../conformance/store-conformance.js';

const url = process.env.AGENT_PLATFORM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const reachable = await probe(url);

if (!reachable.ok) {
  if (process.env.CI === 'true') {
    describe('postgres store', () => {
      it('needs PostgreSQL (CI=true forbids skipping)', () => {
        throw new Error(`PostgreSQL at ${redact(url)} is unreachable: ${reachable.reason}`);
      });
    });
  } else {
    describe.skip(`postgres store (PostgreSQL at ${redact(url)} unreachable: ${reachable.reason})`, () => {
      it('skipped', () => undefined);
    });
  }
} else {
  // Every store gets its own schema, so parallel test files and runs never collide.
  const schemas: string[] = [];
  const newSchema = (): string => {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    return schema;
  };
  const dropSchemas = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      for (const schema of schemas.splice(0)) await client.query(`drop schema if exists "${schema}" cascade`);
    } finally {
      await client.end();
    }
  };

  storeConformance('postgres', async () => openPostgresStore(url, { schema: newSchema() }), dropSchemas);

  describe('postgres store specifics', () => {
    afterAll(dropSchemas);

    it('two processes migrating one schema at once apply each migration once', async () => {
      const schema = newSchema();
      const stores = Array.from({ length: 4 }, () => openPostgresStore(url, { schema, maxConnections: 2 }));
      try {
        await Promise.all(stores.map((s) => s.migrate()));
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          const rows = await client.query(`select id from "${schema}".schema_migrations`);
          expect(rows.rows.map((r: { id: string }) => r.id)).toEqual(MIGRATIONS.map((m) => m.id));
        } finally {
          await client.end();
        }
        // Stores in different "processes" (pools) share idempotency keys.
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => stores[i % stores.length]!.createAgent(agent('shared'), { key: 'k', requestHash: 'h' })),
        );
        expect(results.filter((r) => r.created)).toHaveLength(1);
        expect(new Set(results.map((r) => r.agent.id)).size).toBe(1);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it('keeps tables in its schema, not in public', async () => {
      const schema = newSchema();
      const store = openPostgresStore(url, { schema });
      try {
        await store.migrate();
        await store.createAgent(agent('in-schema'));
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          const { rows } = await client.query<{ n: string }>(`select count(*) as n from "${schema}".agents`);
          expect(rows[0]?.n).toBe('1');
        } finally {
          await client.end();
        }
      } finally {
        await store.close();
      }
    });

    it('ping throws STORE_UNAVAILABLE when the server does not answer', async () => {
      // Port 1 on loopback: nothing listens, the connection is refused at once.
      const store = openPostgresStore('postgres://postgres@127.0.0.1:1/test', { connectTimeoutMs: 2000 });
      try {
        const err = await store.ping().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(UnavailableError);
        expect((err as UnavailableError).code).toBe('STORE_UNAVAILABLE');
        const queryErr = await store.getAgent('x').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect((queryErr as UnavailableError).code).toBe('STORE_UNAVAILABLE');
      } finally {
        await store.close();
      }
    });

    it('openStore selects PostgreSQL for postgres:// and postgresql:// URLs', async () => {
      for (const scheme of ['postgres', 'postgresql']) {
        const schemedUrl = url.replace(/^postgres(ql)?:/, `${scheme}:`);
        const store = await openStore(schemedUrl, '/nonexistent-data-dir', { migrate: false });
        try {
          expect(store.kind).toBe('postgres');
          await store.ping();
        } finally {
          await store.close();
        }
      }
    });

    it('refuses a schema name that is not a plain identifier', () => {
      expect(() => openPostgresStore(url, { schema: 'x"; drop table agents; --' })).toThrow(/schema name/);
    });
  });
}

function agent(name: string): NewAgent {
  return {
    id: randomUUID(),
    tenantId: 't',
    name,
    labels: {},
    spec: {
      image: 'busybox',
      command: [],
      args: [],
      env: {},
      resources: { cpuMillicores: 100, memoryMiB: 64, gpu: 0, cpuLimitMillicores: 100, memoryLimitMiB: 64 },
      restartPolicy: 'Never',
      schedulingPolicy: 'spread',
      priority: 0,
      nodeSelector: {},
      tolerations: [],
    },
    desired: 'running',
    status: { phase: 'Pending', restarts: 0, phaseSince: 1 },
    createdAt: Date.now(),
  };
}

async function probe(connectionString: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function redact(text: string): string {
  return text.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
