import { CompiledQuery, sql, type Kysely, type Selectable, type SelectQueryBuilder, type Updateable } from 'kysely';
import type { Agent, AgentStatus, DesiredState, Phase, Resources } from '../domain/agent.js';
import { accrualStep } from '../tenancy/usage-ledger.js';
import type { NewPlatformEvent, PlatformEvent } from '../domain/event.js';
import { ConflictError, DomainError, InputError, UnavailableError, VersionConflictError, agentNotFound } from '../domain/errors.js';
import { decodeAgentCursor, encodeAgentCursor } from './agent-cursor.js';
import { FencedOutError } from './fenced-out-error.js';
import { GroupCommitQueue, type GroupCommitOptions } from './group-commit-queue.js';
import { MIGRATIONS, applyMigrations, type Migration } from './migrations.js';
import { agentFromRow, eventFromRow, newAgentRow, nodeStateFromRow, nodeStateRow } from './row-mapping.js';
import type { AgentsTable, AuditLogTable, Database, EventsTable, TenantQuotasTable, TenantsTable, UsageLedgerTable } from './schema.js';
import { PreparedQuery, type SqlKind } from './prepared-query.js';
import type { EgressAuditFilter, StoredEgressAudit, StoredSecret } from './store.js';
import type { EgressAuditRecord } from '../egress/egress-audit.js';
import type {
  AccruingAgent,
  AgentFilter,
  AgentPage,
  AgentScan,
  AgentHead,
  AgentHeadPage,
  AgentScanPage,
  AgentUpdate,
  ApiKeyRecord,
  AuditFilter,
  AuditRecord,
  CreateAgentResult,
  EventFilter,
  IdempotencyInput,
  NewAgent,
  NewTenant,
  NodeState,
  Store,
  Tenant,
  TenantPatch,
  TenantQuotaState,
  UsageAccrual,
  UsageFilter,
  UsageRecord,
} from './store.js';
import {
  QUOTA_EXCEEDED_REASON,
  admitNewAgent,
  admitQueued,
  apiKeyFromRow,
  apiKeyRow,
  applyTransition,
  transitionSourceOfAgent,
  transitionSourceOfRow,
  type AgentTransition,
  auditFromRow,
  limitColumns,
  lockQuotaRow,
  quotaStateFromRow,
  readQuotaRow,
  releaseDeleted,
  tenantExists,
  tenantFromRows,
  tenantNotFound,
  usageFromRow,
  usageRow,
} from './tenancy-queries.js';
import type { StoreDialect } from './store-dialect.js';

const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;
/** Rounds of "key taken but its agent is gone" before createAgent gives up; see createAgent. */
const MAX_IDEMPOTENCY_ROUNDS = 3;

// The hot path's queries, compiled once per dialect (prepared-query.ts says why).
type AgentRow = Selectable<AgentsTable>;
const selectAgent = new PreparedQuery<{ id: string }, AgentRow>((db, p) => db.selectFrom('agents').selectAll().where('id', '=', p('id')));
const selectAgentForUpdate = new PreparedQuery<{ id: string }, AgentRow>((db, p) => db.selectFrom('agents').selectAll().where('id', '=', p('id')).forUpdate());
/** The columns of an agent row that its Agent record does not carry. */
type AgentBooks = Pick<AgentRow, 'version' | 'holds_quota' | 'accrued_until'>;
const selectAgentBooks = new PreparedQuery<{ id: string }, AgentBooks>((db, p) => db.selectFrom('agents').select(['version', 'holds_quota', 'accrued_until']).where('id', '=', p('id')));
const selectAgentBooksForUpdate = new PreparedQuery<{ id: string }, AgentBooks>((db, p) =>
  db.selectFrom('agents').select(['version', 'holds_quota', 'accrued_until']).where('id', '=', p('id')).forUpdate(),
);
// Leader fencing (Store.recordFencingToken). A fenced controller write reads the recorded
// token in the statement that reads the row's books: no extra statement on the hot path.
type FencedBooks = AgentBooks & { fence_token: number | string };
const selectAgentBooksFenced = new PreparedQuery<{ id: string }, FencedBooks>((db, p) =>
  db
    .selectFrom('agents')
    .select(['version', 'holds_quota', 'accrued_until', (eb) => eb.selectFrom('leader_fence').select('token').where('id', '=', 1).as('fence_token')])
    .where('id', '=', p('id')),
);
const selectAgentBooksFencedForUpdate = new PreparedQuery<{ id: string }, FencedBooks>((db, p) =>
  db
    .selectFrom('agents')
    .select(['version', 'holds_quota', 'accrued_until', (eb) => eb.selectFrom('leader_fence').select('token').where('id', '=', 1).as('fence_token')])
    .where('id', '=', p('id'))
    .forUpdate(),
);
const selectFenceToken = new PreparedQuery<{ id: number }, { token: number | string }>((db, p) => db.selectFrom('leader_fence').select('token').where('id', '=', p('id')));
/**
 * PostgreSQL advisory lock key of the fence, per schema (installations sharing a database
 * do not wait for each other). Fenced writes hold it shared for their transaction and
 * recordFencingToken exclusively: the record waits for fenced writes in flight, and a
 * fenced write that starts later reads the new token (the read is a later statement
 * than the lock, so its snapshot is taken after the record committed).
 */
const FENCE_LOCK_KEY_SQL = `hashtext('agent-platform:leader-fence:' || current_schema())`;
// The usage meter's statements: one pair per Running agent per accrual interval (the
// ledger insert also closes the billed interval of an agent that stops running).
const moveAccruedUntil = new PreparedQuery<{ id: string; to: number; expected: number }, unknown>((db, p) =>
  db.updateTable('agents').set({ accrued_until: p('to') }).where('id', '=', p('id')).where('phase', '=', 'Running').where('accrued_until', '=', p('expected')),
);
const insertUsage = new PreparedQuery<Omit<UsageLedgerTable, 'id'>, unknown>((db, p) =>
  db.insertInto('usage_ledger').values({
    tenant_id: p('tenant_id'),
    agent_id: p('agent_id'),
    agent_name: p('agent_name'),
    labels: p('labels'),
    start_ms: p('start_ms'),
    end_ms: p('end_ms'),
    cpu_millicores: p('cpu_millicores'),
    memory_mib: p('memory_mib'),
    gpu: p('gpu'),
    used_cpu_us: p('used_cpu_us'),
  }),
);
// One per mutating API request.
const insertAudit = new PreparedQuery<Omit<AuditLogTable, 'id'>, unknown>((db, p) =>
  db.insertInto('audit_log').values({
    time: p('time'),
    request_id: p('request_id'),
    subject: p('subject'),
    role: p('role'),
    tenant_id: p('tenant_id'),
    method: p('method'),
    route: p('route'),
    target_id: p('target_id'),
    status: p('status'),
  }),
);
type EventRow = Omit<EventsTable, 'id'>;
const insertEvent = new PreparedQuery<EventRow, { id: number | bigint | string }>((db, p) =>
  db
    .insertInto('events')
    .values({
      tenant_id: p('tenant_id'),
      object_kind: p('object_kind'),
      object_id: p('object_id'),
      type: p('type'),
      reason: p('reason'),
      message: p('message'),
      data: p('data'),
      time: p('time'),
    })
    .returning('id'),
);
// One round trip for getTenant: the quota columns are all null when the tenant has no quota row.
const selectTenantWithQuota = new PreparedQuery<{ id: string }, Selectable<TenantsTable> & NullableRow<Selectable<TenantQuotasTable>>>((db, p) =>
  db.selectFrom('tenants').leftJoin('tenant_quotas', 'tenant_quotas.tenant_id', 'tenants.id').selectAll('tenants').selectAll('tenant_quotas').where('tenants.id', '=', p('id')),
);
type NullableRow<T> = { [K in keyof T]: T[K] | null };
/** Arguments of the agent compare-and-set besides the column values; no column has these names. */
const CAS_ID = '?id';
const CAS_VERSION = '?version';
const COMMIT = CompiledQuery.raw('commit');
const ROLLBACK = CompiledQuery.raw('rollback');

export interface KyselyStoreOptions {
  /**
   * Migrations to apply in migrate().
   * @default MIGRATIONS
   */
  migrations?: readonly Migration[] | undefined;
  /**
   * Group commit of concurrent writes, for dialects with a single writer connection
   * (SQLite); `false` commits each write alone. Ignored on PostgreSQL, whose server
   * groups commits of its many connections itself.
   * @default {} (on, with GroupCommitOptions defaults) where the dialect supports it
   */
  groupCommit?: GroupCommitOptions | false | undefined;
  /**
   * PostgreSQL: how long a leader fencing lock may be held by a stalled party. A fenced
   * write's transaction is ended by the server once its session sits idle this long
   * inside it (the writer's process paused, or cut off from the database), which drops
   * the fence lock it holds shared; recordFencingToken gives up after waiting this long
   * for that lock. Without both, a stalled writer would keep a new leader from recording
   * its token until TCP keepalive noticed, up to hours. About the leader lease TTL: a
   * healthy fenced write never sits idle that long, and a writer stalled longer has lost
   * its lease anyway.
   * @default 5000 (the default lease TTL)
   */
  fencingTimeoutMs?: number | undefined;
}

/** Default of KyselyStoreOptions.fencingTimeoutMs. */
export const DEFAULT_FENCING_TIMEOUT_MS = 5_000;

/** PostgreSQL's lock_not_available: raised when lock_timeout expires. */
const PG_LOCK_NOT_AVAILABLE = '55P03';

/**
 * PostgreSQL: the statements that begin a fenced write's transaction. One simple query
 * (no parameters), so all go in one round trip; SET takes no parameters, hence the
 * integer validated here. Exported for the test that stalls a fenced write by hand.
 */
export function fencedWriteBeginSql(beginWriteSql: string, fencingTimeoutMs: number): string {
  return `${beginWriteSql}; set local idle_in_transaction_session_timeout = ${checkedTimeoutMs(fencingTimeoutMs)}; select pg_advisory_xact_lock_shared(${FENCE_LOCK_KEY_SQL})`;
}

function checkedTimeoutMs(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`fencingTimeoutMs must be a positive integer, got ${String(ms)}`);
  return ms;
}

/**
 * The Store on any SQL database Kysely speaks. All queries and semantics live
 * here; a StoreDialect supplies only what differs between databases. Errors:
 * expected cases become domain errors; a database that cannot be reached becomes
 * UnavailableError(STORE_UNAVAILABLE); anything else is a bug and passes through.
 */
export class KyselyStore implements Store {
  readonly kind: string;
  readonly #dialect: StoreDialect;
  readonly #db: Kysely<Database>;
  readonly #migrations: readonly Migration[];
  readonly #writes: GroupCommitQueue | undefined;
  /** Compiled agent compare-and-set updates and inserts, by column list. */
  readonly #casUpdates = new Map<string, PreparedQuery<Record<string, unknown>, AgentRow>>();
  readonly #casQuietUpdates = new Map<string, PreparedQuery<Record<string, unknown>, unknown>>();
  readonly #agentInserts = new Map<string, PreparedQuery<Record<string, unknown>, unknown>>();
  readonly #beginWrite: CompiledQuery;
  /** Begins a fenced write's transaction (PostgreSQL: with the fence lock held shared, same round trip). */
  readonly #beginFencedWrite: CompiledQuery;
  readonly #fencingTimeoutMs: number;
  #closed = false;

  constructor(dialect: StoreDialect, options: KyselyStoreOptions = {}) {
    this.#dialect = dialect;
    this.#db = dialect.db;
    this.kind = dialect.kind;
    this.#migrations = options.migrations ?? MIGRATIONS;
    this.#beginWrite = CompiledQuery.raw(dialect.beginWriteSql);
    this.#fencingTimeoutMs = checkedTimeoutMs(options.fencingTimeoutMs ?? DEFAULT_FENCING_TIMEOUT_MS);
    this.#beginFencedWrite = dialect.kind === 'postgres' ? CompiledQuery.raw(fencedWriteBeginSql(dialect.beginWriteSql, this.#fencingTimeoutMs)) : this.#beginWrite;
    const groupCommit = options.groupCommit ?? {};
    this.#writes = dialect.singleWriter && groupCommit !== false ? new GroupCommitQueue(this.#db, dialect.beginWriteSql, { ...groupCommit, executeSync: dialect.executeSync }) : undefined;
  }

  async migrate(): Promise<void> {
    await this.#guard(() => applyMigrations(this.#dialect, this.#migrations));
  }

  async ping(): Promise<void> {
    if (this.#closed) throw this.#unavailable('the store is closed');
    try {
      await sql`select 1`.execute(this.#db);
    } catch (err) {
      // Whatever the reason, a failed ping means "not usable right now".
      throw this.#unavailable(errorMessage(err), err);
    }
  }

  createAgent(agent: NewAgent, idempotency?: IdempotencyInput, events: readonly NewPlatformEvent[] = []): Promise<CreateAgentResult> {
    return this.#guard(async () => {
      const fresh = newAgentRow(agent);
      if (!idempotency) {
        return this.#write(async (trx) => {
          // Quota first: the tenant's row lock serialises admissions (tenancy-queries.ts).
          const row = await admitNewAgent(trx, this.#dialect.kind, fresh, agent.createdAt);
          await this.#insertAgent(trx, row);
          return { agent: agentFromRow(row), created: true, events: await this.#insertEvents(trx, events) };
        }, 'transaction');
      }
      return this.#write(async (trx) => {
        const keyWhere = { tenantId: agent.tenantId, key: idempotency.key };
        for (let round = 1; ; round++) {
          // Claim the key first. On PostgreSQL a concurrent claimant blocks here until
          // the first transaction ends, then sees its committed row: so concurrent
          // calls with one key create one agent, and a retry of a request whose name
          // is now taken (by itself) returns the agent instead of AGENT_NAME_TAKEN.
          const claim = await trx
            .insertInto('idempotency_keys')
            .values({
              tenant_id: agent.tenantId,
              key: idempotency.key,
              request_hash: idempotency.requestHash,
              agent_id: agent.id,
              created_at: agent.createdAt,
            })
            .onConflict((oc) => oc.columns(['tenant_id', 'key']).doNothing())
            .executeTakeFirst();
          if (Number(claim.numInsertedOrUpdatedRows ?? 0n) > 0) {
            const row = await admitNewAgent(trx, this.#dialect.kind, fresh, agent.createdAt);
            await this.#insertAgent(trx, row);
            return { agent: agentFromRow(row), created: true, events: await this.#insertEvents(trx, events) };
          }
          const held = await trx
            .selectFrom('idempotency_keys')
            .select(['request_hash', 'agent_id'])
            .where('tenant_id', '=', keyWhere.tenantId)
            .where('key', '=', keyWhere.key)
            .executeTakeFirst();
          if (held) {
            if (held.request_hash !== idempotency.requestHash) {
              throw new ConflictError(
                'IDEMPOTENCY_KEY_REUSED',
                `idempotency key "${idempotency.key}" was already used for a different request; use a new key`,
                { tenantId: agent.tenantId, idempotencyKey: idempotency.key, agentId: held.agent_id },
              );
            }
            const existing = await trx.selectFrom('agents').selectAll().where('id', '=', held.agent_id).executeTakeFirst();
            if (existing) return { agent: agentFromRow(existing), created: false, events: [] };
            // The key outlived its agent (deleteAgent removes keys, so only a crash or a
            // manual delete gets here): release it and create anew.
            await trx.deleteFrom('idempotency_keys').where('tenant_id', '=', keyWhere.tenantId).where('key', '=', keyWhere.key).execute();
          }
          // held === undefined: the holder was deleted between our two statements.
          if (round >= MAX_IDEMPOTENCY_ROUNDS) {
            throw new ConflictError('IDEMPOTENCY_KEY_CONTENDED', `idempotency key "${idempotency.key}" is changing concurrently; retry the request`, keyWhere);
          }
        }
      }, 'transaction');
    });
  }

  getAgent(id: string): Promise<Agent | undefined> {
    return this.#guard(async () => {
      const row = await selectAgent.first(this.#db, this.#dialect.kind, { id });
      return row ? agentFromRow(row) : undefined;
    });
  }

  getAgentByName(tenantId: string, name: string): Promise<Agent | undefined> {
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('agents').selectAll().where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
      return row ? agentFromRow(row) : undefined;
    });
  }

  listAgents(filter: AgentFilter = {}): Promise<AgentPage> {
    return this.#guard(async () => {
      const limit = pageSize(filter.limit);
      const after = filter.cursor !== undefined ? decodeAgentCursor(filter.cursor) : undefined;
      let query = this.#db.selectFrom('agents').selectAll();
      if (filter.tenantId !== undefined) query = query.where('tenant_id', '=', filter.tenantId);
      // An empty list filters nothing, like an absent one: "?phase=" means "any phase".
      if (filter.phase?.length) query = query.where('phase', 'in', filter.phase);
      if (filter.desired?.length) query = query.where('desired', 'in', filter.desired);
      if (filter.node !== undefined) query = query.where('node', '=', filter.node);
      if (filter.labels && Object.keys(filter.labels).length > 0) query = query.where(this.#dialect.labelsMatch(filter.labels));
      if (after) query = query.where(({ eb, refTuple, tuple }) => eb(refTuple('created_at', 'id'), '>', tuple(after.createdAt, after.id)));
      // One row more than asked tells whether another page exists without a count query.
      const rows = await query.orderBy('created_at').orderBy('id').limit(limit + 1).execute();
      const items = rows.slice(0, limit).map(agentFromRow);
      const last = items[items.length - 1];
      return rows.length > limit && last ? { items, nextCursor: encodeAgentCursor({ createdAt: last.createdAt, id: last.id }) } : { items };
    });
  }

  scanAgents(scan: AgentScan): Promise<AgentScanPage> {
    return this.#guard(() => this.#scan(scan, this.#db.selectFrom('agents').selectAll(), agentFromRow));
  }

  scanAgentHeads(scan: AgentScan): Promise<AgentHeadPage> {
    return this.#guard(() =>
      this.#scan(scan, this.#db.selectFrom('agents').select(['id', 'version', 'phase', 'desired', 'node']), (row) => {
        const head: AgentHead = { id: row.id, version: Number(row.version), phase: row.phase as Phase, desired: row.desired as DesiredState };
        if (row.node !== null) head.node = row.node;
        return head;
      }),
    );
  }

  getAgents(ids: readonly string[]): Promise<Agent[]> {
    return this.#guard(async () => {
      if (ids.length > MAX_PAGE_SIZE) throw new InputError(`at most ${MAX_PAGE_SIZE} ids at once, got ${ids.length}`, { count: ids.length }, 'INVALID_LIMIT');
      if (ids.length === 0) return [];
      const rows = await this.#db.selectFrom('agents').selectAll().where('id', 'in', [...ids]).execute();
      return rows.map(agentFromRow);
    });
  }

  /**
   * One page of an id-ordered pass. Each page must walk an index in id order from afterId:
   * one phase walks (phase, id); a node walks the node index (its few agents sorted);
   * otherwise the primary key. A filter on several phases is applied here, not in SQL:
   * "phase in (...)" makes SQLite pick the (phase, id) index and sort every remaining match
   * for each page.
   */
  async #scan<R extends { id: string; phase: string }, T>(
    scan: AgentScan,
    base: SelectQueryBuilder<Database, 'agents', R>,
    map: (row: R) => T,
  ): Promise<{ items: T[]; nextAfterId?: string }> {
    if (!Number.isInteger(scan.limit) || scan.limit < 1 || scan.limit > MAX_PAGE_SIZE) {
      throw new InputError(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}, got ${String(scan.limit)}`, { limit: scan.limit }, 'INVALID_LIMIT');
    }
    let query = base;
    const phases = scan.phase?.length ? new Set<string>(scan.phase) : undefined;
    const onePhase = phases?.size === 1 && scan.node === undefined ? scan.phase![0]! : undefined;
    if (onePhase !== undefined) query = query.where('phase', '=', onePhase);
    if (scan.node !== undefined) query = query.where('node', '=', scan.node);
    if (scan.afterId !== undefined) query = query.where('id', '>', scan.afterId);
    const rows = await query.orderBy('id').limit(scan.limit).execute();
    const items: T[] = [];
    for (const row of rows as R[]) if (phases === undefined || phases.has(row.phase)) items.push(map(row));
    return rows.length === scan.limit ? { items, nextAfterId: (rows[rows.length - 1] as R).id } : { items };
  }

  countAgents(): Promise<{ tenantId: string; phase: Phase; count: number }[]> {
    return this.#guard(async () => {
      const rows = await this.#db
        .selectFrom('agents')
        .select(['tenant_id', 'phase', (eb) => eb.fn.countAll<number | string | bigint>().as('count')])
        .groupBy(['tenant_id', 'phase'])
        .orderBy('tenant_id')
        .orderBy('phase')
        .execute();
      // PostgreSQL returns count(*) as int8, which pg hands over as a string.
      return rows.map((r) => ({ tenantId: r.tenant_id, phase: r.phase as Phase, count: Number(r.count) }));
    });
  }

  updateAgent(id: string, expectedVersion: number, update: AgentUpdate): Promise<Agent> {
    return this.#guard(async () => {
      const set = agentUpdateSet(update);
      const status = update.status;
      if (status !== undefined) {
        // A status change may take or release quota and close a billed interval: read the
        // row (locked on PostgreSQL), then compare-and-set, all in one transaction.
        return this.#write(async (trx) => {
          const old = await this.#readAgentForUpdate(trx, id);
          if (!old) throw agentNotFound(id);
          if (Number(old.version) !== expectedVersion) throw new VersionConflictError(id, expectedVersion);
          const transition = await applyTransition(trx, this.#dialect.kind, transitionSourceOfRow(old), status, update.updatedAt);
          const row = await this.#compareAndSet(trx, id, expectedVersion, { ...set, ...transition.set });
          if (!row) throw new VersionConflictError(id, expectedVersion);
          if (transition.usage) await insertUsage.execute(trx, this.#dialect.kind, transition.usage);
          return agentFromRow(row);
        }, 'transaction');
      }
      return this.#write(async (db) => {
        // One statement is the compare-and-set: no transaction, no lock held across awaits.
        const row = await this.#compareAndSet(db, id, expectedVersion, set);
        if (row) return agentFromRow(row);
        const current = await db.selectFrom('agents').select('version').where('id', '=', id).executeTakeFirst();
        if (!current) throw agentNotFound(id);
        throw new VersionConflictError(id, expectedVersion);
      }, 'single');
    });
  }

  updateAgentWithEvents(current: Agent, update: AgentUpdate, events: readonly NewPlatformEvent[], fencingToken?: number): Promise<{ agent: Agent; events: PlatformEvent[] }> {
    return this.#guard(() =>
      this.#write(
        async (trx) => {
          const { id, version } = current;
          const pg = this.#dialect.kind === 'postgres';
          // Only what the caller's copy cannot know: the quota and billing columns, which the
          // usage meter moves without a version bump. The version check makes the caller's
          // copy the stored row, so nothing else is read, and nothing is read back.
          let old: AgentBooks | undefined;
          if (fencingToken === undefined) old = await (pg ? selectAgentBooksForUpdate : selectAgentBooks).first(trx, this.#dialect.kind, { id });
          else {
            const fenced = await (pg ? selectAgentBooksFencedForUpdate : selectAgentBooksFenced).first(trx, this.#dialect.kind, { id });
            if (fenced && Number(fenced.fence_token) > fencingToken) throw new FencedOutError(fencingToken, Number(fenced.fence_token));
            old = fenced;
          }
          if (!old) throw agentNotFound(id);
          if (Number(old.version) !== version) throw new VersionConflictError(id, version);
        let transition: AgentTransition | undefined;
        if (update.status !== undefined) {
          transition = await applyTransition(trx, this.#dialect.kind, transitionSourceOfAgent(current, old), update.status, update.updatedAt);
        }
          const changed = await this.#compareAndSetQuiet(trx, id, version, { ...agentUpdateSet(update), ...transition?.set });
          if (!changed) throw new VersionConflictError(id, version);
          if (transition?.usage) await insertUsage.execute(trx, this.#dialect.kind, transition.usage);
          return { agent: updatedCopy(current, update, transition?.status), events: await this.#insertEvents(trx, events) };
        },
        'transaction',
        fencingToken !== undefined,
      ),
    );
  }

  deleteAgent(id: string, fencingToken?: number): Promise<void> {
    return this.#guard(() =>
      this.#write(
        async (trx) => {
          if (fencingToken !== undefined) await this.#checkFence(trx, fencingToken);
          const old = await this.#readAgentForUpdate(trx, id);
          await trx.deleteFrom('idempotency_keys').where('agent_id', '=', id).execute();
          if (!old) return;
          await trx.deleteFrom('agents').where('id', '=', id).execute();
          await releaseDeleted(trx, this.#dialect.kind, old);
        },
        'transaction',
        fencingToken !== undefined,
      ),
    );
  }

  recordFencingToken(fencingToken: number): Promise<number> {
    if (!Number.isSafeInteger(fencingToken) || fencingToken < 1) {
      return Promise.reject(new InputError(`fencing token must be a positive integer, got ${String(fencingToken)}`, { fencingToken }, 'INVALID_FENCING_TOKEN'));
    }
    return this.#guard(() =>
      this.#write(async (trx) => {
        // Exclusive: waits for the fenced writes in flight (they hold it shared) to commit,
        // but not for ever: one stalled mid-transaction is ended by the server after
        // fencingTimeoutMs idle (its begin says so), and should the lock still be held
        // after that long (a writer without that timeout), this attempt fails instead of
        // hanging, and the elector campaigns again.
        if (this.#dialect.kind === 'postgres') {
          await sql.raw(`set local lock_timeout = ${this.#fencingTimeoutMs}`).execute(trx);
          try {
            await sql`select pg_advisory_xact_lock(${sql.raw(FENCE_LOCK_KEY_SQL)})`.execute(trx);
          } catch (err) {
            if ((err as { code?: unknown }).code !== PG_LOCK_NOT_AVAILABLE) throw err;
            throw new UnavailableError(
              'LEADER_FENCE_LOCK_TIMEOUT',
              `recording fencing token ${fencingToken} waited ${this.#fencingTimeoutMs} ms for fenced writes in flight to end (one holds the fence lock: a stalled replica); nothing recorded, campaign again`,
              { fencingToken, waitedMs: this.#fencingTimeoutMs },
            );
          }
        }
        await trx.updateTable('leader_fence').set({ token: fencingToken }).where('id', '=', 1).where('token', '<', fencingToken).execute();
        const row = await selectFenceToken.first(trx, this.#dialect.kind, { id: 1 });
        return Number(row?.token ?? 0);
      }, 'transaction'),
    );
  }

  assertFencingToken(fencingToken: number): Promise<void> {
    return this.#guard(async () => {
      const row = await selectFenceToken.first(this.#db, this.#dialect.kind, { id: 1 });
      const recorded = Number(row?.token ?? 0);
      if (recorded > fencingToken) throw new FencedOutError(fencingToken, recorded);
    });
  }

  appendEvent(event: NewPlatformEvent): Promise<PlatformEvent> {
    return this.#guard(async () => (await this.#write((db) => this.#insertEvents(db, [event]), 'single'))[0]!);
  }

  listEvents(filter: EventFilter = {}): Promise<PlatformEvent[]> {
    return this.#guard(async () => {
      let query = this.#db.selectFrom('events').selectAll();
      if (filter.tenantId !== undefined) query = query.where('tenant_id', '=', filter.tenantId);
      if (filter.objectKind !== undefined) query = query.where('object_kind', '=', filter.objectKind);
      if (filter.objectId !== undefined) query = query.where('object_id', '=', filter.objectId);
      if (filter.sinceMs !== undefined) query = query.where('time', '>=', filter.sinceMs);
      if (filter.afterId !== undefined) query = query.where('id', '>', filter.afterId);
      const rows = await query.orderBy('id').limit(pageSize(filter.limit)).execute();
      return rows.map(eventFromRow);
    });
  }

  pruneEvents(beforeMs: number): Promise<number> {
    return this.#guard(async () => {
      const result = await this.#write((db) => db.deleteFrom('events').where('time', '<', beforeMs).executeTakeFirst(), 'single');
      return Number(result.numDeletedRows);
    });
  }

  listNodeStates(): Promise<NodeState[]> {
    return this.#guard(async () => {
      const rows = await this.#db.selectFrom('nodes').selectAll().orderBy('id').execute();
      return rows.map(nodeStateFromRow);
    });
  }

  putNodeState(state: NodeState): Promise<void> {
    return this.#guard(async () => {
      const row = nodeStateRow(state);
      await this.#write(async (db) => {
        const { id: _id, ...rest } = row;
        await db
          .insertInto('nodes')
          .values(row)
          .onConflict((oc) => oc.column('id').doUpdateSet(rest))
          .execute();
      }, 'single');
    });
  }

  getSetting(key: string): Promise<string | undefined> {
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
      return row?.value;
    });
  }

  putSettingIfAbsent(key: string, value: string): Promise<string> {
    return this.#guard(async () => {
      return this.#write(async (db) => {
        await db
          .insertInto('settings')
          .values({ key, value })
          .onConflict((oc) => oc.column('key').doNothing())
          .execute();
        // Settings are never deleted, so the row read here is the first writer's.
        const row = await db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirstOrThrow();
        return row.value;
      }, 'single');
    });
  }

  // ---- tenancy ------------------------------------------------------------------------

  createTenant(tenant: NewTenant): Promise<Tenant> {
    return this.#guard(() =>
      this.#write(async (trx) => {
        try {
          await trx
            .insertInto('tenants')
            .values({ id: tenant.id, name: tenant.name, created_at: tenant.createdAt, updated_at: tenant.createdAt, min_isolation: tenant.minIsolation ?? null })
            .execute();
        } catch (err) {
          if (this.#dialect.isUniqueViolation(err)) throw tenantExists(tenant.id);
          throw err;
        }
        // The quota row may exist already (agents created before the tenant record): keep its counters.
        const limits = { admission: tenant.admission, ...limitColumns(tenant.quota, true) };
        await trx
          .insertInto('tenant_quotas')
          .values({ tenant_id: tenant.id, ...limits })
          .onConflict((oc) => oc.column('tenant_id').doUpdateSet(limits))
          .execute();
        return this.#readTenant(trx, tenant.id) as Promise<Tenant>;
      }, 'transaction'),
    );
  }

  getTenant(id: string): Promise<Tenant | undefined> {
    return this.#guard(() => this.#readTenant(this.#db, id));
  }

  listTenants(): Promise<Tenant[]> {
    return this.#guard(async () => {
      const tenants = await this.#db.selectFrom('tenants').selectAll().orderBy('id').execute();
      const quotas = await this.#db.selectFrom('tenant_quotas').selectAll().execute();
      const byId = new Map(quotas.map((q) => [q.tenant_id, q]));
      return tenants.map((t) => tenantFromRows(t, byId.get(t.id)));
    });
  }

  updateTenant(id: string, patch: TenantPatch): Promise<Tenant> {
    return this.#guard(() =>
      this.#write(async (trx) => {
        const updated = await trx
          .updateTable('tenants')
          .set({
            updated_at: patch.updatedAt,
            ...(patch.name !== undefined ? { name: patch.name } : {}),
            ...(patch.minIsolation !== undefined ? { min_isolation: patch.minIsolation } : {}),
          })
          .where('id', '=', id)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) throw tenantNotFound(id);
        await lockQuotaRow(trx, this.#dialect.kind, id);
        const set = { ...(patch.admission !== undefined ? { admission: patch.admission } : {}), ...limitColumns(patch.quota ?? {}, false) };
        if (Object.keys(set).length > 0) await trx.updateTable('tenant_quotas').set(set).where('tenant_id', '=', id).execute();
        return (await this.#readTenant(trx, id))!;
      }, 'transaction'),
    );
  }

  deleteTenant(id: string): Promise<void> {
    return this.#guard(() =>
      this.#write(async (trx) => {
        // Lock the quota row first: a concurrent create in this tenant waits behind us.
        await lockQuotaRow(trx, this.#dialect.kind, id);
        const agent = await trx.selectFrom('agents').select('id').where('tenant_id', '=', id).limit(1).executeTakeFirst();
        if (agent) throw new ConflictError('TENANT_HAS_AGENTS', `tenant "${id}" still has agents; delete them first or use ?cascade=true`, { tenantId: id });
        await trx.deleteFrom('api_keys').where('tenant_id', '=', id).execute();
        // Secrets go with their tenant: a new tenant reusing the id must not read them.
        await trx.deleteFrom('secrets').where('tenant_id', '=', id).execute();
        await trx.deleteFrom('tenant_quotas').where('tenant_id', '=', id).execute();
        await trx.deleteFrom('tenants').where('id', '=', id).execute();
      }, 'transaction'),
    );
  }

  getTenantQuota(tenantId: string): Promise<TenantQuotaState> {
    return this.#guard(async () => {
      const row = await readQuotaRow(this.#db, this.#dialect.kind, tenantId);
      return quotaStateFromRow(tenantId, row);
    });
  }

  createApiKey(key: ApiKeyRecord): Promise<void> {
    return this.#guard(async () => {
      await this.#write((db) => db.insertInto('api_keys').values(apiKeyRow(key)).execute(), 'single');
    });
  }

  getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? apiKeyFromRow(row) : undefined;
    });
  }

  listApiKeys(tenantId: string): Promise<ApiKeyRecord[]> {
    return this.#guard(async () => {
      const rows = await this.#db.selectFrom('api_keys').selectAll().where('tenant_id', '=', tenantId).orderBy('created_at', 'desc').orderBy('id').execute();
      return rows.map(apiKeyFromRow);
    });
  }

  revokeApiKey(tenantId: string, id: string, revokedAt: number): Promise<boolean> {
    return this.#guard(async () => {
      const r = await this.#write(
        (db) => db.updateTable('api_keys').set({ revoked_at: revokedAt }).where('id', '=', id).where('tenant_id', '=', tenantId).where('revoked_at', 'is', null).executeTakeFirst(),
        'single',
      );
      return Number(r.numUpdatedRows) > 0;
    });
  }

  listQueuedAgents(tenantId?: string, limit = 1000): Promise<Agent[]> {
    return this.#guard(async () => {
      let q = this.#db.selectFrom('agents').selectAll().where('phase', '=', 'Pending').where('holds_quota', '=', 0).where('desired', '=', 'running');
      if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
      const rows = await q.orderBy('created_at').orderBy('id').limit(pageSize(limit)).execute();
      return rows.map(agentFromRow).filter((a) => a.status.reason === QUOTA_EXCEEDED_REASON);
    });
  }

  admitQueuedAgent(id: string, now: number): Promise<Agent | undefined> {
    return this.#guard(() =>
      this.#write(async (trx) => {
        const old = await this.#readAgentForUpdate(trx, id);
        if (!old || Number(old.holds_quota) === 1 || old.phase !== 'Pending' || old.desired !== 'running') return undefined;
        if (agentFromRow(old).status.reason !== QUOTA_EXCEEDED_REASON) return undefined;
        const status = await admitQueued(trx, this.#dialect.kind, old);
        if (status === undefined) return undefined;
        const row = await trx
          .updateTable('agents')
          .set((eb) => ({ status, holds_quota: 1, updated_at: now, version: eb('version', '+', 1) }))
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        return agentFromRow(row);
      }, 'transaction'),
    );
  }

  listAccruingAgents(afterId?: string, limit = 1000): Promise<AccruingAgent[]> {
    return this.#guard(async () => {
      let q = this.#db.selectFrom('agents').selectAll().where('phase', '=', 'Running').where('accrued_until', 'is not', null);
      if (afterId !== undefined) q = q.where('id', '>', afterId);
      const rows = await q.orderBy('id').limit(pageSize(limit)).execute();
      return rows.map((r) => ({ agent: agentFromRow(r), accruedUntil: Number(r.accrued_until) }));
    });
  }

  accrueUsage(steps: UsageAccrual[]): Promise<number> {
    if (steps.length === 0) return Promise.resolve(0);
    return this.#guard(() =>
      this.#write(async (trx) => {
        let applied = 0;
        for (const step of steps) {
          const moved = await moveAccruedUntil.execute(trx, this.#dialect.kind, { id: step.agentId, to: step.accruedUntil, expected: step.expectedAccruedUntil });
          if (Number(moved.numAffectedRows ?? 0n) === 0) continue;
          applied++;
          if (step.record) await insertUsage.execute(trx, this.#dialect.kind, usageRow(step.record));
        }
        return applied;
      }, 'transaction'),
    );
  }

  listUsage(filter: UsageFilter): Promise<UsageRecord[]> {
    return this.#guard(async () => {
      let q = this.#db.selectFrom('usage_ledger').selectAll();
      if (filter.tenantId !== undefined) q = q.where('tenant_id', '=', filter.tenantId);
      if (filter.fromMs !== undefined) q = q.where('end_ms', '>', filter.fromMs);
      if (filter.toMs !== undefined) q = q.where('start_ms', '<', filter.toMs);
      const rows = await q.orderBy('start_ms').orderBy('id').execute();
      const records = rows.map(usageFromRow);
      if (filter.openUntilMs === undefined) return records;
      let open = this.#db
        .selectFrom('agents')
        .select(['id', 'tenant_id', 'name', 'labels', 'spec', 'accrued_until'])
        .where('phase', '=', 'Running')
        .where('accrued_until', 'is not', null);
      if (filter.tenantId !== undefined) open = open.where('tenant_id', '=', filter.tenantId);
      for (const a of await open.orderBy('id').execute()) {
        const step = accrualStep(Number(a.accrued_until), filter.openUntilMs, filter.maxOpenStepMs);
        if (step.toMs <= step.fromMs) continue;
        if ((filter.fromMs !== undefined && step.toMs <= filter.fromMs) || (filter.toMs !== undefined && step.fromMs >= filter.toMs)) continue;
        const r = (JSON.parse(a.spec) as { resources: Resources }).resources;
        records.push({
          tenantId: a.tenant_id,
          agentId: a.id,
          agentName: a.name,
          labels: JSON.parse(a.labels) as Record<string, string>,
          startMs: step.fromMs,
          endMs: step.toMs,
          cpuMillicores: r.cpuMillicores,
          memoryMiB: r.memoryMiB,
          gpu: r.gpu,
        });
      }
      return records;
    });
  }

  lastUsageOfAgent(tenantId: string, agentId: string, startFromMs: number, startBeforeMs: number): Promise<UsageRecord | undefined> {
    return this.#guard(async () => {
      // A range of the (tenant_id, start_ms) index, read from its end: the closing piece is
      // usually among the last rows of the window.
      const row = await this.#db
        .selectFrom('usage_ledger')
        .selectAll()
        .where('tenant_id', '=', tenantId)
        .where('start_ms', '>=', startFromMs)
        .where('start_ms', '<', startBeforeMs)
        .where('agent_id', '=', agentId)
        .orderBy('start_ms', 'desc')
        .orderBy('id', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row ? usageFromRow(row) : undefined;
    });
  }

  fillUsedCpu(recordId: number, usedCpuMicros: number): Promise<boolean> {
    return this.#guard(async () => {
      const r = await this.#write(
        (db) => db.updateTable('usage_ledger').set({ used_cpu_us: usedCpuMicros }).where('id', '=', recordId).where('used_cpu_us', 'is', null).executeTakeFirst(),
        'single',
      );
      return Number(r.numUpdatedRows) > 0;
    });
  }

  appendAudit(record: AuditRecord): Promise<void> {
    return this.#guard(async () => {
      await this.#write(
        (db) =>
          insertAudit.execute(db, this.#dialect.kind, {
            time: record.time,
            request_id: record.requestId,
            subject: record.subject,
            role: record.role,
            tenant_id: record.tenantId,
            method: record.method,
            route: record.route,
            target_id: record.targetId ?? null,
            status: record.status,
          }),
        'single',
      );
    });
  }

  listAudit(filter: AuditFilter): Promise<AuditRecord[]> {
    return this.#guard(async () => {
      let q = this.#db.selectFrom('audit_log').selectAll();
      if (filter.tenantId !== undefined) q = q.where('tenant_id', '=', filter.tenantId);
      if (filter.sinceMs !== undefined) q = q.where('time', '>=', filter.sinceMs);
      if (filter.beforeId !== undefined) q = q.where('id', '<', filter.beforeId);
      const rows = await q.orderBy('id', 'desc').limit(pageSize(filter.limit)).execute();
      return rows.map(auditFromRow);
    });
  }

  async #readTenant(db: Kysely<Database>, id: string): Promise<Tenant | undefined> {
    const row = await selectTenantWithQuota.first(db, this.#dialect.kind, { id });
    if (!row) return undefined;
    // A left join without a match leaves tenant_id null: the tenant has no quota row.
    return tenantFromRows(row, row.tenant_id === null ? undefined : (row as Selectable<TenantQuotasTable>));
  }

  // ---- secrets and egress audit (src/security) ----------------------------------------

  putSecret(secret: StoredSecret): Promise<StoredSecret> {
    return this.#guard(async () => {
      const row = {
        tenant_id: secret.tenantId,
        name: secret.name,
        key_id: secret.keyId,
        ciphertext: secret.ciphertext,
        created_at: secret.createdAt,
        updated_at: secret.updatedAt,
      };
      return this.#write(async (db) => {
        await db
          .insertInto('secrets')
          .values(row)
          .onConflict((oc) => oc.columns(['tenant_id', 'name']).doUpdateSet({ key_id: row.key_id, ciphertext: row.ciphertext, updated_at: row.updated_at }))
          .execute();
        const stored = await db.selectFrom('secrets').selectAll().where('tenant_id', '=', row.tenant_id).where('name', '=', row.name).executeTakeFirstOrThrow();
        return secretFromRow(stored);
      }, 'transaction');
    });
  }

  getSecret(tenantId: string, name: string): Promise<StoredSecret | undefined> {
    return this.#guard(async () => {
      const row = await this.#db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
      return row ? secretFromRow(row) : undefined;
    });
  }

  listSecrets(tenantId?: string): Promise<StoredSecret[]> {
    return this.#guard(async () => {
      let query = this.#db.selectFrom('secrets').selectAll();
      if (tenantId !== undefined) query = query.where('tenant_id', '=', tenantId);
      const rows = await query.orderBy('tenant_id').orderBy('name').execute();
      return rows.map(secretFromRow);
    });
  }

  deleteSecret(tenantId: string, name: string): Promise<boolean> {
    return this.#guard(async () => {
      const result = await this.#write((db) => db.deleteFrom('secrets').where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst(), 'single');
      return Number(result.numDeletedRows) > 0;
    });
  }

  appendEgressAudit(records: readonly EgressAuditRecord[]): Promise<void> {
    return this.#guard(async () => {
      if (records.length === 0) return;
      const rows = records.map((r) => {
        const { time, agentId, tenantId, sourceIp, method, host, port, decision, reason, bytesUp, bytesDown, durationMs, ...rest } = r;
        return {
          time,
          agent_id: agentId,
          tenant_id: tenantId,
          source_ip: sourceIp,
          method,
          host,
          port,
          decision,
          reason,
          detail: Object.keys(rest).length > 0 ? JSON.stringify(rest) : null,
          bytes_up: bytesUp,
          bytes_down: bytesDown,
          duration_ms: durationMs,
        };
      });
      await this.#write(async (db) => {
        await db.insertInto('egress_audit').values(rows).execute();
      }, 'single');
    });
  }

  listEgressAudit(filter: EgressAuditFilter): Promise<StoredEgressAudit[]> {
    return this.#guard(async () => {
      let query = this.#db.selectFrom('egress_audit').selectAll();
      if (filter.agentId !== undefined) query = query.where('agent_id', '=', filter.agentId);
      if (filter.tenantId !== undefined) query = query.where('tenant_id', '=', filter.tenantId);
      if (filter.afterId !== undefined) query = query.where('id', '>', filter.afterId);
      const rows = await query.orderBy('id').limit(pageSize(filter.limit)).execute();
      return rows.map((row) => ({
        id: Number(row.id),
        time: Number(row.time),
        agentId: row.agent_id,
        tenantId: row.tenant_id,
        sourceIp: row.source_ip,
        method: row.method as EgressAuditRecord['method'],
        host: row.host,
        port: row.port === null ? null : Number(row.port),
        decision: row.decision as EgressAuditRecord['decision'],
        reason: row.reason as EgressAuditRecord['reason'],
        ...(row.detail !== null ? (JSON.parse(row.detail) as Partial<EgressAuditRecord>) : {}),
        bytesUp: Number(row.bytes_up),
        bytesDown: Number(row.bytes_down),
        durationMs: Number(row.duration_ms),
      }));
    });
  }

  pruneEgressAudit(beforeMs: number): Promise<number> {
    return this.#guard(async () => {
      const result = await this.#write((db) => db.deleteFrom('egress_audit').where('time', '<', beforeMs).executeTakeFirst(), 'single');
      return Number(result.numDeletedRows);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Writes accepted before close() still commit (or fail) before the connection goes.
    await this.#writes?.idle();
    await this.#dialect.destroy();
  }

  async #insertAgent(db: Kysely<Database>, row: AgentsTable): Promise<void> {
    try {
      await preparedFor(this.#agentInserts, row, (columns) =>
        new PreparedQuery<Record<string, unknown>, unknown>((b, p) => b.insertInto('agents').values(Object.fromEntries(columns.map((c) => [c, p(c)])) as unknown as AgentsTable)),
      ).execute(db, this.#dialect.kind, row as unknown as Record<string, unknown>);
    } catch (err) {
      if (!this.#dialect.isUniqueViolation(err)) throw err;
      // Two unique keys on agents: the primary key (id) and (tenant_id, name).
      if (/agents_pkey|agents\.id\b/.test(`${errorMessage(err)} ${constraintOf(err)}`)) {
        throw new ConflictError('AGENT_ID_TAKEN', `agent id "${row.id}" already exists`, { agentId: row.id });
      }
      throw new ConflictError('AGENT_NAME_TAKEN', `tenant "${row.tenant_id}" already has an agent named "${row.name}"; pick another name or delete it first`, {
        tenantId: row.tenant_id,
        name: row.name,
      });
    }
  }

  /** Inserts `events` in order (one prepared statement each) and returns them with their ids. */
  async #insertEvents(db: Kysely<Database>, events: readonly NewPlatformEvent[]): Promise<PlatformEvent[]> {
    const stored: PlatformEvent[] = [];
    for (const event of events) {
      const data = event.data === undefined ? null : JSON.stringify(event.data);
      const row = {
        tenant_id: event.tenantId,
        object_kind: event.objectKind,
        object_id: event.objectId,
        type: event.type,
        reason: event.reason,
        message: event.message,
        data,
        time: event.time,
      };
      const inserted = (await insertEvent.first(db, this.#dialect.kind, row))!;
      const one: PlatformEvent = { ...event, id: Number(inserted.id) };
      if (data === null) delete one.data;
      stored.push(one);
    }
    return stored;
  }

  /** Throws FencedOutError when a token larger than `fencingToken` is recorded; inside a fenced write's transaction. */
  async #checkFence(trx: Kysely<Database>, fencingToken: number): Promise<void> {
    const row = await selectFenceToken.first(trx, this.#dialect.kind, { id: 1 });
    const recorded = Number(row?.token ?? 0);
    if (recorded > fencingToken) throw new FencedOutError(fencingToken, recorded);
  }

  /** The agent row, locked until the transaction ends on PostgreSQL (SQLite's writer holds the database). */
  #readAgentForUpdate(trx: Kysely<Database>, id: string): Promise<AgentRow | undefined> {
    return (this.#dialect.kind === 'postgres' ? selectAgentForUpdate : selectAgent).first(trx, this.#dialect.kind, { id });
  }

  /**
   * `update agents set <values>, version = version + 1 where id = ? and version = ?
   * returning *`: the row after the update, or undefined when the version moved on (or
   * the agent is gone). One compiled statement per set of columns.
   */
  #compareAndSet(db: Kysely<Database>, id: string, expectedVersion: number, values: Updateable<AgentsTable>): Promise<AgentRow | undefined> {
    const query = preparedFor(this.#casUpdates, values, (columns) =>
      new PreparedQuery<Record<string, unknown>, AgentRow>((b, p) =>
        b
          .updateTable('agents')
          .set((eb) => ({ ...(Object.fromEntries(columns.map((c) => [c, p(c)])) as Updateable<AgentsTable>), version: eb('version', '+', 1) }))
          .where('id', '=', p(CAS_ID) as string)
          .where('version', '=', p(CAS_VERSION) as number)
          .returningAll(),
      ),
    );
    return query.first(db, this.#dialect.kind, { ...values, [CAS_ID]: id, [CAS_VERSION]: expectedVersion });
  }

  /** #compareAndSet without reading the row back: true when the version matched. */
  async #compareAndSetQuiet(db: Kysely<Database>, id: string, expectedVersion: number, values: Updateable<AgentsTable>): Promise<boolean> {
    const query = preparedFor(this.#casQuietUpdates, values, (columns) =>
      new PreparedQuery<Record<string, unknown>, unknown>((b, p) =>
        b
          .updateTable('agents')
          .set((eb) => ({ ...(Object.fromEntries(columns.map((c) => [c, p(c)])) as Updateable<AgentsTable>), version: eb('version', '+', 1) }))
          .where('id', '=', p(CAS_ID) as string)
          .where('version', '=', p(CAS_VERSION) as number),
      ),
    );
    const result = await query.execute(db, this.#dialect.kind, { ...values, [CAS_ID]: id, [CAS_VERSION]: expectedVersion });
    return Number(result.numAffectedRows ?? 0n) === 1;
  }

  /**
   * Runs a write: through the group-commit queue when there is one, else in its own
   * transaction ('transaction', for several statements that must stand or fall
   * together) or as plain statements ('single', each atomic on its own). A `fenced`
   * transaction begins holding the fence lock (PostgreSQL; SQLite's one writer
   * serialises it with recordFencingToken anyway).
   */
  #write<T>(fn: (db: Kysely<Database>) => Promise<T>, mode: 'single' | 'transaction', fenced = false): Promise<T> {
    if (this.#writes) return this.#writes.run(fn);
    return mode === 'transaction' ? this.#writeTransaction(fn, fenced ? this.#beginFencedWrite : this.#beginWrite) : fn(this.#db);
  }

  /**
   * Runs `fn` in a transaction on one connection. The dialect's begin statement lets
   * SQLite take its write lock up front, so a writer never fails half-way on an
   * upgrade from a read lock.
   */
  #writeTransaction<T>(fn: (trx: Kysely<Database>) => Promise<T>, begin: CompiledQuery = this.#beginWrite): Promise<T> {
    return this.#db.connection().execute(async (conn) => {
      let result: T;
      try {
        // Inside the try: the fenced begin is two statements, and a failing lock must not
        // hand the connection back to the pool inside an open transaction.
        await conn.executeQuery(begin);
        result = await fn(conn);
      } catch (err) {
        await conn.executeQuery(ROLLBACK).catch(() => undefined);
        throw err;
      }
      await conn.executeQuery(COMMIT);
      return result;
    });
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw this.#unavailable('the store is closed');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof DomainError) throw err;
      if (this.#closed || this.#dialect.isUnavailable(err)) throw this.#unavailable(errorMessage(err), err);
      throw err;
    }
  }

  #unavailable(reason: string, cause?: unknown): UnavailableError {
    const error = new UnavailableError('STORE_UNAVAILABLE', `${this.kind} store is unavailable: ${reason}`, { kind: this.kind });
    if (cause !== undefined) (error as Error & { cause?: unknown }).cause = cause;
    return error;
  }
}

/**
 * The prepared query for the columns of `values` (in their order), built by `make` the
 * first time. Columns whose value is undefined are left out, as Kysely leaves them out.
 */
function preparedFor<Q>(cache: Map<string, Q>, values: object, make: (columns: string[]) => Q): Q {
  const columns = Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([k]) => k);
  const key = columns.join(',');
  let query = cache.get(key);
  if (query === undefined) {
    query = make(columns);
    cache.set(key, query);
  }
  return query;
}

function pageSize(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1) throw new InputError(`limit must be a positive integer, got ${String(limit)}`, { limit }, 'INVALID_LIMIT');
  return Math.min(limit, MAX_PAGE_SIZE);
}

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const constraintOf = (err: unknown): string =>
  typeof err === 'object' && err !== null && 'constraint' in err ? String((err as { constraint: unknown }).constraint) : '';

const secretFromRow = (row: { tenant_id: string; name: string; key_id: string; ciphertext: string; created_at: number; updated_at: number }): StoredSecret => ({
  tenantId: row.tenant_id,
  name: row.name,
  keyId: row.key_id,
  ciphertext: row.ciphertext,
  createdAt: Number(row.created_at),
  updatedAt: Number(row.updated_at),
});

/** The agent columns an AgentUpdate sets (always updated_at). */
function agentUpdateSet(update: AgentUpdate): Updateable<AgentsTable> {
  const set: Updateable<AgentsTable> = { updated_at: update.updatedAt };
  if (update.desired !== undefined) set.desired = update.desired;
  if (update.labels !== undefined) set.labels = JSON.stringify(update.labels);
  if (update.spec !== undefined) set.spec = JSON.stringify(update.spec);
  if (update.status !== undefined) {
    set.status = JSON.stringify(update.status);
    set.phase = update.status.phase;
    set.node = update.status.node ?? null;
  }
  return set;
}

/**
 * The record after `update` was applied to `current` (one version on), equal to what a
 * read would return: JSON drops undefined members, so they are dropped here too.
 */
function updatedCopy(current: Agent, update: AgentUpdate, admittedStatus: AgentStatus | undefined): Agent {
  const status = admittedStatus ?? update.status;
  return {
    ...current,
    ...(update.desired !== undefined ? { desired: update.desired } : {}),
    ...(update.labels !== undefined ? { labels: jsonCopy(update.labels) } : {}),
    ...(update.spec !== undefined ? { spec: jsonCopy(update.spec) } : {}),
    ...(status !== undefined ? { status: withoutUndefined(status) } : {}),
    updatedAt: update.updatedAt,
    version: current.version + 1,
  };
}

const jsonCopy = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** A status's own members without the undefined ones (its members are plain JSON values). */
function withoutUndefined(status: AgentStatus): AgentStatus {
  const members = status as unknown as Record<string, unknown>;
  for (const key in members) {
    if (members[key] === undefined) {
      const copy: Record<string, unknown> = {};
      for (const k in members) if (members[k] !== undefined) copy[k] = members[k];
      return copy as unknown as AgentStatus;
    }
  }
  return status;
}
