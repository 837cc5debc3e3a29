import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentSpec, AgentStatus, DesiredState, Phase } from '../../src/domain/agent.js';
import { ConflictError, ForbiddenError, InputError, NotFoundError, UnavailableError, VersionConflictError } from '../../src/domain/errors.js';
import type { NewPlatformEvent } from '../../src/domain/event.js';
import type { Agent } from '../../src/domain/agent.js';
import type { AgentFilter, NewAgent, Store } from '../../src/store/store.js';
import { FencedOutError } from '../../src/store/fenced-out-error.js';

const BASE_MS = 1_767_225_600_000; // 2026-01-01, larger than 2^32: catches int4 / string round-trips

/**
 * The contract every Store adapter must meet. `open` returns a fresh, empty store
 * (each test gets its own); the suite migrates and closes it. `cleanup` runs once
 * after the suite (drop schemas, delete files).
 */
export function storeConformance(name: string, open: () => Promise<Store>, cleanup?: () => Promise<void>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await open();
      await store.migrate();
    });
    afterEach(async () => {
      await store.close();
    });
    if (cleanup) afterAll(cleanup);

    describe('migrate, ping, close', () => {
      it('migrate is idempotent, also when called concurrently', async () => {
        await Promise.all([store.migrate(), store.migrate(), store.migrate(), store.migrate()]);
        await store.migrate();
        const { agent } = await store.createAgent(newAgent());
        expect(await store.getAgent(agent.id)).toEqual(agent);
      });

      it('ping resolves while the store is open', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('after close, ping and queries throw UnavailableError(STORE_UNAVAILABLE); close is idempotent', async () => {
        await store.close();
        await expectDomainError(store.ping(), UnavailableError, 'STORE_UNAVAILABLE');
        await expectDomainError(store.getAgent('x'), UnavailableError, 'STORE_UNAVAILABLE');
        await expectDomainError(store.createAgent(newAgent()), UnavailableError, 'STORE_UNAVAILABLE');
        await store.close();
      });

      it('names its kind', () => {
        expect(['sqlite', 'postgres']).toContain(store.kind);
      });
    });

    describe('createAgent / getAgent / getAgentByName', () => {
      it('stores a new agent at version 1 and reads it back exactly', async () => {
        const input = newAgent({
          labels: { team: 'ml', 'app.kubernetes.io/name': 'réseau ü' },
          status: { phase: 'Pending', restarts: 0, phaseSince: BASE_MS + 7, reason: 'Created', message: 'waiting for a node' },
        });
        const result = await store.createAgent(input);
        expect(result.created).toBe(true);
        const expected: Agent = { ...input, updatedAt: input.createdAt, version: 1 };
        expect(result.agent).toEqual(expected);
        const read = await store.getAgent(input.id);
        expect(read).toEqual(expected);
        expect(await store.getAgentByName(input.tenantId, input.name)).toEqual(expected);
        // Timestamps and versions come back as JS numbers (PostgreSQL int8 is a string by default).
        expect(typeof read?.createdAt).toBe('number');
        expect(typeof read?.updatedAt).toBe('number');
        expect(typeof read?.version).toBe('number');
        expect(typeof read?.status.phaseSince).toBe('number');
      });

      it('returns undefined for a missing agent', async () => {
        expect(await store.getAgent('no-such-id')).toBeUndefined();
        const { agent } = await store.createAgent(newAgent());
        expect(await store.getAgentByName(agent.tenantId, 'no-such-name')).toBeUndefined();
        expect(await store.getAgentByName('other-tenant', agent.name)).toBeUndefined();
      });

      it('refuses a duplicate name in one tenant with AGENT_NAME_TAKEN and keeps the first', async () => {
        const first = await store.createAgent(newAgent({ tenantId: 't1', name: 'web' }));
        await expectDomainError(store.createAgent(newAgent({ tenantId: 't1', name: 'web' })), ConflictError, 'AGENT_NAME_TAKEN');
        expect(await store.getAgentByName('t1', 'web')).toEqual(first.agent);
        expect((await store.listAgents({ tenantId: 't1' })).items).toHaveLength(1);
      });

      it('allows the same name in another tenant', async () => {
        await store.createAgent(newAgent({ tenantId: 't1', name: 'web' }));
        const other = await store.createAgent(newAgent({ tenantId: 't2', name: 'web' }));
        expect(other.created).toBe(true);
        expect(await store.getAgentByName('t2', 'web')).toEqual(other.agent);
      });

      it('refuses a duplicate id with a ConflictError, not a driver error', async () => {
        const { agent } = await store.createAgent(newAgent());
        await expectDomainError(store.createAgent(newAgent({ id: agent.id })), ConflictError, 'AGENT_ID_TAKEN');
      });

      it('many concurrent creates without keys all succeed', async () => {
        const inputs = Array.from({ length: 20 }, (_, i) => newAgent({ tenantId: 't1', name: `a-${i}` }));
        const results = await Promise.all(inputs.map((a) => store.createAgent(a)));
        expect(results.every((r) => r.created)).toBe(true);
        expect((await store.listAgents({ tenantId: 't1' })).items.map((a) => a.id).sort()).toEqual(inputs.map((a) => a.id).sort());
      });
    });

    describe('createAgent with an idempotency key', () => {
      it('returns the earlier agent with created: false for the same key and hash', async () => {
        const first = await store.createAgent(newAgent({ tenantId: 't1', name: 'job' }), { key: 'k1', requestHash: 'h1' });
        expect(first.created).toBe(true);
        // The retry carries a fresh id (the API makes one per request) and the same name:
        // the key must win over the name conflict.
        const retry = await store.createAgent(newAgent({ tenantId: 't1', name: 'job' }), { key: 'k1', requestHash: 'h1' });
        expect(retry).toEqual({ agent: first.agent, created: false, events: [] });
        expect((await store.listAgents({ tenantId: 't1' })).items).toHaveLength(1);
      });

      it('returns the current record (not the original) after updates', async () => {
        const first = await store.createAgent(newAgent({ tenantId: 't1' }), { key: 'k1', requestHash: 'h1' });
        const updated = await store.updateAgent(first.agent.id, 1, { desired: 'stopped', updatedAt: BASE_MS + 99 });
        const retry = await store.createAgent(newAgent({ tenantId: 't1' }), { key: 'k1', requestHash: 'h1' });
        expect(retry).toEqual({ agent: updated, created: false, events: [] });
      });

      it('refuses the same key with another request hash (IDEMPOTENCY_KEY_REUSED)', async () => {
        await store.createAgent(newAgent({ tenantId: 't1', name: 'a' }), { key: 'k1', requestHash: 'h1' });
        await expectDomainError(
          store.createAgent(newAgent({ tenantId: 't1', name: 'b' }), { key: 'k1', requestHash: 'h2' }),
          ConflictError,
          'IDEMPOTENCY_KEY_REUSED',
        );
        expect(await store.getAgentByName('t1', 'b')).toBeUndefined();
      });

      it('scopes keys per tenant', async () => {
        const a = await store.createAgent(newAgent({ tenantId: 't1', name: 'x' }), { key: 'k1', requestHash: 'h1' });
        const b = await store.createAgent(newAgent({ tenantId: 't2', name: 'x' }), { key: 'k1', requestHash: 'h-other' });
        expect(a.created && b.created).toBe(true);
        expect(a.agent.id).not.toBe(b.agent.id);
      });

      it('does not record the key of a request that failed on the name', async () => {
        await store.createAgent(newAgent({ tenantId: 't1', name: 'taken' }), { key: 'k1', requestHash: 'h1' });
        await expectDomainError(
          store.createAgent(newAgent({ tenantId: 't1', name: 'taken' }), { key: 'k2', requestHash: 'h2' }),
          ConflictError,
          'AGENT_NAME_TAKEN',
        );
        // Had k2 been kept, another body under k2 would now be IDEMPOTENCY_KEY_REUSED.
        const later = await store.createAgent(newAgent({ tenantId: 't1', name: 'free' }), { key: 'k2', requestHash: 'h3' });
        expect(later.created).toBe(true);
        expect(later.agent.name).toBe('free');
      });

      it('20 concurrent creates with one key create exactly one agent', async () => {
        const inputs = Array.from({ length: 20 }, () => newAgent({ tenantId: 't1', name: 'once' }));
        const results = await Promise.all(inputs.map((a) => store.createAgent(a, { key: 'same', requestHash: 'h' })));
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const winner = results.find((r) => r.created)!.agent;
        expect(inputs.map((a) => a.id)).toContain(winner.id);
        for (const r of results) expect(r.agent).toEqual(winner);
        expect((await store.listAgents({ tenantId: 't1' })).items).toEqual([winner]);
      });

      it('20 concurrent creates with one key but two bodies: one agent, the other body refused', async () => {
        const calls = Array.from({ length: 20 }, (_, i) => {
          const hash = i % 2 === 0 ? 'even' : 'odd';
          return store.createAgent(newAgent({ tenantId: 't1', name: `body-${hash}` }), { key: 'k', requestHash: hash }).then(
            (r) => ({ hash, result: r, error: undefined as unknown }),
            (error: unknown) => ({ hash, result: undefined, error }),
          );
        });
        const outcomes = await Promise.all(calls);
        const agents = (await store.listAgents({ tenantId: 't1' })).items;
        expect(agents).toHaveLength(1);
        const winnerHash = agents[0]!.name === 'body-even' ? 'even' : 'odd';
        for (const o of outcomes) {
          if (o.hash === winnerHash) {
            expect(o.result?.agent.id).toBe(agents[0]!.id);
          } else {
            expect(o.error).toBeInstanceOf(ConflictError);
            expect((o.error as ConflictError).code).toBe('IDEMPOTENCY_KEY_REUSED');
          }
        }
        expect(outcomes.filter((o) => o.result?.created)).toHaveLength(1);
      });

      it('20 concurrent creates of one name under different keys: one wins, the rest AGENT_NAME_TAKEN', async () => {
        const outcomes = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => store.createAgent(newAgent({ tenantId: 't1', name: 'race' }), { key: `k${i}`, requestHash: `h${i}` })),
        );
        const won = outcomes.filter((o) => o.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const o of outcomes) {
          if (o.status === 'rejected') {
            expect(o.reason).toBeInstanceOf(ConflictError);
            expect((o.reason as ConflictError).code).toBe('AGENT_NAME_TAKEN');
          }
        }
        expect((await store.listAgents({ tenantId: 't1' })).items).toHaveLength(1);
      });
    });

    describe('updateAgent', () => {
      it('compare-and-sets on the version and bumps it', async () => {
        const { agent } = await store.createAgent(newAgent({ labels: { a: '1' } }));
        const status: AgentStatus = { phase: 'Running', node: 'node-1', containerId: 'c1', restarts: 2, phaseSince: BASE_MS + 50, startedAt: BASE_MS + 40 };
        const spec = { ...agent.spec, image: 'busybox:1.37', priority: 5 };
        const updated = await store.updateAgent(agent.id, 1, { status, desired: 'stopped', labels: { b: '2' }, spec, updatedAt: BASE_MS + 60 });
        const expected: Agent = { ...agent, status, desired: 'stopped', labels: { b: '2' }, spec, updatedAt: BASE_MS + 60, version: 2 };
        expect(updated).toEqual(expected);
        expect(await store.getAgent(agent.id)).toEqual(expected);
      });

      it('leaves unnamed fields alone', async () => {
        const { agent } = await store.createAgent(newAgent({ labels: { keep: 'me' } }));
        const updated = await store.updateAgent(agent.id, 1, { desired: 'stopped', updatedAt: BASE_MS + 5 });
        expect(updated).toEqual({ ...agent, desired: 'stopped', updatedAt: BASE_MS + 5, version: 2 });
        const again = await store.updateAgent(agent.id, 2, { updatedAt: BASE_MS + 6 });
        expect(again).toEqual({ ...updated, updatedAt: BASE_MS + 6, version: 3 });
      });

      it('throws VersionConflictError for a stale version and changes nothing', async () => {
        const { agent } = await store.createAgent(newAgent());
        await store.updateAgent(agent.id, 1, { desired: 'stopped', updatedAt: BASE_MS + 1 });
        const err = await store.updateAgent(agent.id, 1, { desired: 'deleted', updatedAt: BASE_MS + 2 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(VersionConflictError);
        expect(err).toBeInstanceOf(ConflictError);
        expect((err as VersionConflictError).code).toBe('VERSION_CONFLICT');
        expect((err as VersionConflictError).agentId).toBe(agent.id);
        const current = await store.getAgent(agent.id);
        expect(current?.desired).toBe('stopped');
        expect(current?.version).toBe(2);
      });

      it('throws AGENT_NOT_FOUND for a missing agent', async () => {
        await expectDomainError(store.updateAgent('missing', 1, { updatedAt: BASE_MS }), NotFoundError, 'AGENT_NOT_FOUND');
      });

      it('lets exactly one of 20 concurrent writers of one version win', async () => {
        const { agent } = await store.createAgent(newAgent());
        const outcomes = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => store.updateAgent(agent.id, 1, { labels: { writer: String(i) }, updatedAt: BASE_MS + i })),
        );
        const won = outcomes.filter((o): o is PromiseFulfilledResult<Agent> => o.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(VersionConflictError);
        expect(await store.getAgent(agent.id)).toEqual(won[0]!.value);
        expect(won[0]!.value.version).toBe(2);
      });

      it('keeps phase and node filters in step with the status', async () => {
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1' }));
        await store.updateAgent(agent.id, 1, { status: { phase: 'Running', node: 'n1', restarts: 0, phaseSince: BASE_MS }, updatedAt: BASE_MS });
        expect(ids(await store.listAgents({ phase: ['Running'] }))).toEqual([agent.id]);
        expect(ids(await store.listAgents({ node: 'n1' }))).toEqual([agent.id]);
        await store.updateAgent(agent.id, 2, { status: { phase: 'Pending', restarts: 1, phaseSince: BASE_MS + 1 }, updatedAt: BASE_MS + 1 });
        expect(ids(await store.listAgents({ phase: ['Running'] }))).toEqual([]);
        expect(ids(await store.listAgents({ node: 'n1' }))).toEqual([]);
        expect(ids(await store.listAgents({ phase: ['Pending'] }))).toEqual([agent.id]);
      });
    });

    describe('events written with the agent (createAgent, updateAgentWithEvents)', () => {
      it('createAgent stores its events in the same transaction and returns them with ids; a replay stores none', async () => {
        const input = newAgent({ tenantId: 't1', name: 'ev' });
        const created = await store.createAgent(input, { key: 'k-ev', requestHash: 'h' }, [newEvent({ tenantId: 't1', objectId: input.id, reason: 'Created', data: { image: 'x' } })]);
        expect(created.events).toHaveLength(1);
        expect(created.events[0]).toMatchObject({ tenantId: 't1', objectId: input.id, reason: 'Created', data: { image: 'x' } });
        expect(await store.listEvents({ objectId: input.id })).toEqual(created.events);
        const replay = await store.createAgent(newAgent({ tenantId: 't1', name: 'ev' }), { key: 'k-ev', requestHash: 'h' }, [newEvent({ tenantId: 't1', objectId: 'other', reason: 'Created' })]);
        expect(replay.events).toEqual([]);
        expect(await store.listEvents({ objectId: 'other' })).toEqual([]);
      });

      it('a refused create (name taken) stores no event', async () => {
        await store.createAgent(newAgent({ tenantId: 't1', name: 'dup' }));
        const second = newAgent({ tenantId: 't1', name: 'dup' });
        await expectDomainError(store.createAgent(second, undefined, [newEvent({ objectId: second.id })]), ConflictError, 'AGENT_NAME_TAKEN');
        expect(await store.listEvents({ objectId: second.id })).toEqual([]);
      });

      it('updateAgentWithEvents stores the events in order with the update (status and plain updates)', async () => {
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1' }));
        const status: AgentStatus = { phase: 'Starting', node: 'n1', restarts: 0, phaseSince: BASE_MS + 1 };
        const first = await store.updateAgentWithEvents(agent, { status, updatedAt: BASE_MS + 1 }, [
          newEvent({ tenantId: 't1', objectId: agent.id, reason: 'Scheduled', time: BASE_MS + 1 }),
          newEvent({ tenantId: 't1', objectId: agent.id, reason: 'Starting', time: BASE_MS + 1 }),
        ]);
        expect(first.agent).toEqual({ ...agent, status, updatedAt: BASE_MS + 1, version: 2 });
        expect(first.events.map((e) => e.reason)).toEqual(['Scheduled', 'Starting']);
        expect(first.events[1]!.id).toBeGreaterThan(first.events[0]!.id);
        const second = await store.updateAgentWithEvents(first.agent, { labels: { a: 'b' }, updatedAt: BASE_MS + 2 }, [newEvent({ tenantId: 't1', objectId: agent.id, reason: 'Labelled' })]);
        expect(second.agent.version).toBe(3);
        expect(await store.getAgent(agent.id)).toEqual(second.agent);
        expect((await store.listEvents({ objectId: agent.id })).map((e) => e.reason)).toEqual(['Scheduled', 'Starting', 'Labelled']);
      });

      it('returns exactly what a read returns: undefined members dropped, queued admission status, spec and labels', async () => {
        await store.createTenant({ id: 'tq', name: 'q', admission: 'queue', quota: { running: 0 }, createdAt: BASE_MS });
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1' }));
        const status = { phase: 'Running', node: 'n1', restarts: 0, phaseSince: BASE_MS, finishedAt: undefined, message: undefined } as AgentStatus;
        const { agent: updated } = await store.updateAgentWithEvents(agent, { status, spec: { ...agent.spec, priority: 7 }, labels: { x: 'y' }, updatedAt: BASE_MS + 3 }, []);
        expect(Object.keys(updated.status)).not.toContain('finishedAt');
        expect(await store.getAgent(agent.id)).toStrictEqual(updated);
        // An agent leaving a terminal phase of a queue-mode tenant with no room is queued, and
        // the record returned says so.
        const { agent: queuedOne } = await store.createAgent(newAgent({ tenantId: 'tq' }));
        const failed = await store.updateAgentWithEvents(queuedOne, { status: { ...queuedOne.status, phase: 'Failed' }, updatedAt: BASE_MS + 4 }, []);
        const restarted = await store.updateAgentWithEvents(failed.agent, { status: { ...failed.agent.status, phase: 'Pending', reason: 'Restart' }, updatedAt: BASE_MS + 5 }, []);
        expect(restarted.agent.status).toMatchObject({ phase: 'Pending', reason: 'QuotaExceeded' });
        expect(await store.getAgent(queuedOne.id)).toStrictEqual(restarted.agent);
      });

      it('a version conflict stores none of the events, with or without a status', async () => {
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1' }));
        await store.updateAgent(agent.id, 1, { desired: 'stopped', updatedAt: BASE_MS + 1 });
        const withStatus = store.updateAgentWithEvents(agent, { status: { phase: 'Starting', node: 'n1', restarts: 0, phaseSince: BASE_MS }, updatedAt: BASE_MS + 2 }, [
          newEvent({ objectId: agent.id, reason: 'Lost1' }),
        ]);
        await expect(withStatus).rejects.toBeInstanceOf(VersionConflictError);
        const plain = store.updateAgentWithEvents(agent, { labels: {}, updatedAt: BASE_MS + 2 }, [newEvent({ objectId: agent.id, reason: 'Lost2' })]);
        await expect(plain).rejects.toBeInstanceOf(VersionConflictError);
        expect(await store.listEvents({ objectId: agent.id })).toEqual([]);
      });
    });

    describe('deleteAgent', () => {
      it('removes the agent, frees its name, and is a no-op when absent', async () => {
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1', name: 'gone' }));
        await store.deleteAgent(agent.id);
        expect(await store.getAgent(agent.id)).toBeUndefined();
        expect(await store.getAgentByName('t1', 'gone')).toBeUndefined();
        await store.deleteAgent(agent.id);
        await store.deleteAgent('never-existed');
        expect((await store.createAgent(newAgent({ tenantId: 't1', name: 'gone' }))).created).toBe(true);
      });

      it('removes the idempotency keys of the agent', async () => {
        const first = await store.createAgent(newAgent({ tenantId: 't1', name: 'k' }), { key: 'k1', requestHash: 'h1' });
        await store.deleteAgent(first.agent.id);
        const again = await store.createAgent(newAgent({ tenantId: 't1', name: 'k' }), { key: 'k1', requestHash: 'h2' });
        expect(again.created).toBe(true);
        expect(again.agent.id).not.toBe(first.agent.id);
      });

      it('keeps the events of the agent', async () => {
        const { agent } = await store.createAgent(newAgent());
        await store.appendEvent(newEvent({ objectId: agent.id }));
        await store.deleteAgent(agent.id);
        expect(await store.listEvents({ objectId: agent.id })).toHaveLength(1);
      });
    });

    describe('leader fencing (recordFencingToken, fenced controller writes)', () => {
      it('records tokens only upwards; a fenced write with an older token is refused and writes nothing; equal, newer and unfenced writes pass', async () => {
        const { agent } = await store.createAgent(newAgent({ tenantId: 't1' }));
        expect(await store.recordFencingToken(5)).toBe(5);
        expect(await store.recordFencingToken(3)).toBe(5); // never lowered: 3 is told it is stale
        expect(await store.recordFencingToken(5)).toBe(5);
        await expectDomainError(store.recordFencingToken(0), InputError, 'INVALID_FENCING_TOKEN');

        const starting: AgentStatus = { phase: 'Starting', node: 'n1', restarts: 0, phaseSince: BASE_MS + 1 };
        const stale = store.updateAgentWithEvents(agent, { status: starting, updatedAt: BASE_MS + 1 }, [newEvent({ objectId: agent.id, reason: 'FromOldLeader' })], 4);
        await expectDomainError(stale, FencedOutError, 'LEADER_FENCED_OUT');
        const error = (await stale.catch((e: unknown) => e)) as FencedOutError;
        expect(error).toBeInstanceOf(ConflictError);
        expect(error.details).toEqual({ fencingToken: 4, recordedToken: 5 });
        expect(await store.getAgent(agent.id)).toEqual(agent);
        expect(await store.listEvents({ objectId: agent.id })).toEqual([]);
        await expectDomainError(store.deleteAgent(agent.id, 4), FencedOutError, 'LEADER_FENCED_OUT');
        expect(await store.getAgent(agent.id)).toEqual(agent);
        await expectDomainError(store.assertFencingToken(4), FencedOutError, 'LEADER_FENCED_OUT');

        await store.assertFencingToken(5);
        const current = await store.updateAgentWithEvents(agent, { status: starting, updatedAt: BASE_MS + 1 }, [newEvent({ objectId: agent.id, reason: 'FromLeader' })], 5);
        expect(current.agent.version).toBe(2);
        const newer = await store.updateAgentWithEvents(current.agent, { labels: { by: 'newer' }, updatedAt: BASE_MS + 2 }, [], 6);
        // Unfenced writes (the API, the usage meter) are not the fence's business.
        const unfenced = await store.updateAgentWithEvents(newer.agent, { labels: { by: 'api' }, updatedAt: BASE_MS + 3 }, []);
        expect(await store.getAgent(agent.id)).toEqual(unfenced.agent);
        expect((await store.listEvents({ objectId: agent.id })).map((e) => e.reason)).toEqual(['FromLeader']);
        // A version conflict is still a version conflict under a valid token.
        await expect(store.updateAgentWithEvents(agent, { labels: {}, updatedAt: BASE_MS + 4 }, [], 5)).rejects.toBeInstanceOf(VersionConflictError);
        await store.deleteAgent(agent.id, 5);
        expect(await store.getAgent(agent.id)).toBeUndefined();
      });

      it('a takeover racing fenced writes in flight: each write either committed before it or was refused; none of the old token passes after it', async () => {
        const agents = await createMany(store, 20, () => ({ tenantId: 't1' }));
        expect(await store.recordFencingToken(1)).toBe(1);
        const writes = agents.map((a, i) =>
          store
            .updateAgentWithEvents(a, { labels: { w: String(i) }, updatedAt: BASE_MS + i }, [newEvent({ objectId: a.id, reason: 'Old' })], 1)
            .then(() => 'written' as const, (e: unknown) => (e instanceof FencedOutError ? ('fenced' as const) : Promise.reject(e))),
        );
        const takeover = store.recordFencingToken(2);
        const outcomes = await Promise.all(writes);
        expect(await takeover).toBe(2);
        for (const [i, a] of agents.entries()) {
          const stored = await store.getAgent(a.id);
          const events = await store.listEvents({ objectId: a.id });
          // All or nothing, whichever way the race went.
          if (outcomes[i] === 'written') {
            expect(stored?.labels).toEqual({ w: String(i) });
            expect(events).toHaveLength(1);
          } else {
            expect(stored).toEqual(a);
            expect(events).toEqual([]);
          }
        }
        const late = await Promise.allSettled(agents.map((a) => store.getAgent(a.id).then((cur) => store.updateAgentWithEvents(cur!, { labels: {}, updatedAt: BASE_MS + 99 }, [], 1))));
        expect(late.every((r) => r.status === 'rejected' && r.reason instanceof FencedOutError)).toBe(true);
      });

      it('fenced writes that fail part-way (stale version, missing agent, fenced out) leave the fence free: the next record completes at once', async () => {
        const [a, b] = await createMany(store, 2, () => ({ tenantId: 't1' }));
        expect(await store.recordFencingToken(1)).toBe(1);
        const moved = await store.updateAgentWithEvents(a!, { labels: { n: '1' }, updatedAt: BASE_MS + 1 }, [], 1);
        // Each fails inside its fenced transaction, after the fence lock was taken.
        await expect(store.updateAgentWithEvents(a!, { labels: { n: 'stale' }, updatedAt: BASE_MS + 2 }, [], 1)).rejects.toBeInstanceOf(VersionConflictError);
        await expectDomainError(store.updateAgentWithEvents({ ...b!, id: 'missing' }, { labels: {}, updatedAt: BASE_MS + 2 }, [], 1), NotFoundError, 'AGENT_NOT_FOUND');
        expect(await store.recordFencingToken(2)).toBe(2);
        await expectDomainError(store.updateAgentWithEvents(moved.agent, { labels: { n: 'old' }, updatedAt: BASE_MS + 3 }, [], 1), FencedOutError, 'LEADER_FENCED_OUT');
        // Nothing holds the fence lock any more: a record (which takes it exclusively on
        // PostgreSQL) finishes well within the shortest store fencing timeout.
        const startedMs = Date.now();
        expect(await store.recordFencingToken(3)).toBe(3);
        expect(Date.now() - startedMs).toBeLessThan(1_000);
        const after = await store.updateAgentWithEvents(moved.agent, { labels: { n: '3' }, updatedAt: BASE_MS + 4 }, [], 3);
        expect(await store.getAgent(a!.id)).toEqual(after.agent);
      });
    });

    describe('listAgents', () => {
      it('orders by createdAt, then id, whatever the insertion order', async () => {
        const made = [
          newAgent({ id: 'c', createdAt: BASE_MS + 2 }),
          newAgent({ id: 'b', createdAt: BASE_MS + 1 }),
          newAgent({ id: 'a', createdAt: BASE_MS + 2 }),
          newAgent({ id: 'z', createdAt: BASE_MS }),
        ];
        for (const a of made) await store.createAgent(a);
        expect(ids(await store.listAgents())).toEqual(['z', 'b', 'a', 'c']);
      });

      it('pages with an opaque cursor until the last page, which has none', async () => {
        const all = await createMany(store, 25, (i) => ({ createdAt: BASE_MS + Math.floor(i / 3) }));
        const seen: string[] = [];
        let cursor: string | undefined;
        const sizes: number[] = [];
        do {
          const page = await store.listAgents({ limit: 10, cursor });
          sizes.push(page.items.length);
          seen.push(...ids(page));
          cursor = page.nextCursor;
          if (cursor !== undefined) expect(cursor).not.toContain(page.items[page.items.length - 1]!.id);
        } while (cursor !== undefined);
        expect(sizes).toEqual([10, 10, 5]);
        expect(seen).toEqual(sortedIds(all));
      });

      it('gives no cursor when the last page is exactly full', async () => {
        await createMany(store, 20);
        const first = await store.listAgents({ limit: 10 });
        expect(first.nextCursor).toBeDefined();
        const second = await store.listAgents({ limit: 10, cursor: first.nextCursor });
        expect(second.items).toHaveLength(10);
        expect(second.nextCursor).toBeUndefined();
      });

      it('keeps pages correct under a sparse filter', async () => {
        const all = await createMany(store, 30, (i): Partial<NewAgent> => ({ labels: i % 3 === 0 ? { team: 'a', i: String(i) } : { team: 'b' } }));
        const want = sortedIds(all.filter((a) => a.labels.team === 'a'));
        for (const filter of [{ labels: { team: 'a' } }, { phase: ['Pending' as Phase], labels: { team: 'a' } }]) {
          const seen: string[] = [];
          let cursor: string | undefined;
          do {
            const page: Awaited<ReturnType<Store['listAgents']>> = await store.listAgents({ ...filter, limit: 4, cursor });
            expect(page.items.length).toBeLessThanOrEqual(4);
            seen.push(...ids(page));
            cursor = page.nextCursor;
          } while (cursor !== undefined);
          expect(seen).toEqual(want);
        }
      });

      it('shows agents created after a cursor was issued on later pages, never twice', async () => {
        await createMany(store, 5);
        const first = await store.listAgents({ limit: 3 });
        const late = await store.createAgent(newAgent({ createdAt: BASE_MS + 1_000_000 }));
        const second = await store.listAgents({ limit: 3, cursor: first.nextCursor });
        expect(ids(second)).toHaveLength(3);
        expect(ids(second)).toContain(late.agent.id);
        expect(ids(second).some((id) => ids(first).includes(id))).toBe(false);
      });

      it('filters by tenant, phase, desired, node and labels, alone and together', async () => {
        const mk = (o: Partial<NewAgent> & { phase?: Phase; node?: string }): NewAgent =>
          newAgent({ ...o, status: { phase: o.phase ?? 'Pending', node: o.node, restarts: 0, phaseSince: BASE_MS } });
        const a1 = await store.createAgent(mk({ tenantId: 't1', phase: 'Running', node: 'n1', desired: 'running', labels: { team: 'ml', 'app.kubernetes.io/name': 'x.y' } }));
        const a2 = await store.createAgent(mk({ tenantId: 't1', phase: 'Pending', desired: 'running', labels: { team: 'ml' } }));
        const a3 = await store.createAgent(mk({ tenantId: 't1', phase: 'Stopped', node: 'n2', desired: 'stopped', labels: { team: 'web' } }));
        const a4 = await store.createAgent(mk({ tenantId: 't2', phase: 'Running', node: 'n1', desired: 'running', labels: { team: 'ml' } }));
        const idsOf = async (f: AgentFilter): Promise<string[]> => ids(await store.listAgents(f)).sort();
        const sorted = (...xs: { agent: Agent }[]): string[] => xs.map((x) => x.agent.id).sort();

        expect(await idsOf({ tenantId: 't1' })).toEqual(sorted(a1, a2, a3));
        expect(await idsOf({ tenantId: 'nobody' })).toEqual([]);
        expect(await idsOf({ phase: ['Running'] })).toEqual(sorted(a1, a4));
        expect(await idsOf({ phase: ['Running', 'Stopped'] })).toEqual(sorted(a1, a3, a4));
        expect(await idsOf({ phase: [] })).toEqual(sorted(a1, a2, a3, a4));
        expect(await idsOf({ desired: ['stopped'] })).toEqual(sorted(a3));
        expect(await idsOf({ desired: ['stopped', 'running'] })).toEqual(sorted(a1, a2, a3, a4));
        expect(await idsOf({ node: 'n1' })).toEqual(sorted(a1, a4));
        expect(await idsOf({ labels: { team: 'ml' } })).toEqual(sorted(a1, a2, a4));
        expect(await idsOf({ labels: { team: 'ml', 'app.kubernetes.io/name': 'x.y' } })).toEqual(sorted(a1));
        expect(await idsOf({ labels: { team: 'ml', 'app.kubernetes.io/name': 'other' } })).toEqual([]);
        expect(await idsOf({ labels: { 'no-such': 'label' } })).toEqual([]);
        expect(await idsOf({ labels: {} })).toEqual(sorted(a1, a2, a3, a4));
        expect(await idsOf({ tenantId: 't1', phase: ['Running', 'Pending'], labels: { team: 'ml' }, desired: ['running'] })).toEqual(sorted(a1, a2));
        expect(await idsOf({ tenantId: 't1', node: 'n1', phase: ['Running'] })).toEqual(sorted(a1));
      });

      it('matches label keys and values literally (quotes, dots, wildcards)', async () => {
        const tricky = await store.createAgent(newAgent({ labels: { 'we"ird.key': '%_*', plain: 'v' } }));
        await store.createAgent(newAgent({ labels: { 'we"ird.key': 'abc', plain: 'v' } }));
        expect(ids(await store.listAgents({ labels: { 'we"ird.key': '%_*' } }))).toEqual([tricky.agent.id]);
        expect(ids(await store.listAgents({ labels: { 'we"ird.key': '%' } }))).toEqual([]);
      });

      it('returns 100 by default and caps large limits instead of failing', async () => {
        const all = await createMany(store, 105);
        const page = await store.listAgents();
        expect(page.items).toHaveLength(100);
        expect(page.nextCursor).toBeDefined();
        expect(ids(await store.listAgents({ limit: 100_000 }))).toEqual(sortedIds(all));
      });

      it('refuses a bad limit or cursor with an InputError', async () => {
        await expectDomainError(store.listAgents({ limit: 0 }), InputError, 'INVALID_LIMIT');
        await expectDomainError(store.listAgents({ limit: 1.5 }), InputError, 'INVALID_LIMIT');
        await expectDomainError(store.listAgents({ cursor: 'garbage!' }), InputError, 'INVALID_CURSOR');
      });
    });

    describe('scanAgents', () => {
      it('pages through every agent in id order, filtered by phase (one or several) and node', async () => {
        const agents = await createMany(store, 7, (i) => ({ tenantId: i % 2 ? 't1' : 't2' }));
        const phases: Phase[] = ['Pending', 'Running', 'Running', 'Failed', 'Running', 'Pending', 'Stopping'];
        for (const [i, a] of agents.entries()) {
          if (phases[i] === 'Pending') continue;
          await store.updateAgent(a.id, a.version, { status: { phase: phases[i]!, node: i % 2 ? 'n1' : 'n2', restarts: 0, phaseSince: BASE_MS }, updatedAt: BASE_MS });
        }
        const byId = [...agents].sort((x, y) => (x.id < y.id ? -1 : 1));
        const scanAll = async (scan: Omit<Parameters<Store['scanAgents']>[0], 'afterId' | 'limit'>, limit: number): Promise<string[]> => {
          const out: string[] = [];
          for (let afterId: string | undefined; ; ) {
            const page = await store.scanAgents({ ...scan, limit, afterId });
            expect(page.items.length).toBeLessThanOrEqual(limit);
            out.push(...page.items.map((a) => a.id));
            if (page.nextAfterId === undefined) return out;
            afterId = page.nextAfterId;
          }
        };
        expect(await scanAll({}, 2)).toEqual(byId.map((a) => a.id));
        const phaseOf = new Map(agents.map((a, i) => [a.id, phases[i]!]));
        const nodeOf = new Map(agents.map((a, i) => [a.id, phases[i] === 'Pending' ? undefined : i % 2 ? 'n1' : 'n2']));
        expect(await scanAll({ phase: ['Running'] }, 2)).toEqual(byId.filter((a) => phaseOf.get(a.id) === 'Running').map((a) => a.id));
        expect(await scanAll({ phase: ['Pending', 'Stopping'] }, 1)).toEqual(byId.filter((a) => ['Pending', 'Stopping'].includes(phaseOf.get(a.id)!)).map((a) => a.id));
        expect(await scanAll({ node: 'n1', phase: ['Running', 'Stopping'] }, 1)).toEqual(
          byId.filter((a) => nodeOf.get(a.id) === 'n1' && ['Running', 'Stopping'].includes(phaseOf.get(a.id)!)).map((a) => a.id),
        );
        const { items: [first] } = await store.scanAgents({ limit: 1 });
        expect(first).toEqual(await store.getAgent(byId[0]!.id));
        expect((await store.scanAgents({ limit: 1000 })).nextAfterId).toBeUndefined();
      });

      it('scanAgentHeads walks the same pass with id, version, phase, desired and node only; getAgents reads a batch', async () => {
        const agents = await createMany(store, 5);
        const moved = await store.updateAgent(agents[2]!.id, 1, { status: { phase: 'Running', node: 'n7', restarts: 0, phaseSince: BASE_MS }, desired: 'running', updatedAt: BASE_MS });
        const heads = [];
        for (let afterId: string | undefined; ; ) {
          const page = await store.scanAgentHeads({ limit: 2, afterId });
          heads.push(...page.items);
          if (page.nextAfterId === undefined) break;
          afterId = page.nextAfterId;
        }
        const expected = [...agents.filter((a) => a.id !== moved.id), moved]
          .sort((x, y) => (x.id < y.id ? -1 : 1))
          .map((a) => ({ id: a.id, version: a.version, phase: a.status.phase, desired: a.desired, ...(a.status.node !== undefined ? { node: a.status.node } : {}) }));
        expect(heads).toEqual(expected);
        expect((await store.scanAgentHeads({ phase: ['Running'], limit: 10 })).items).toEqual([{ id: moved.id, version: 2, phase: 'Running', desired: 'running', node: 'n7' }]);
        const batch = await store.getAgents([agents[0]!.id, moved.id, 'missing']);
        expect(batch.sort((x, y) => (x.id < y.id ? -1 : 1))).toEqual([agents[0]!, moved].sort((x, y) => (x.id < y.id ? -1 : 1)));
        expect(await store.getAgents([])).toEqual([]);
      });

      it('refuses a limit outside 1..1000 with INVALID_LIMIT', async () => {
        await expectDomainError(store.scanAgents({ limit: 0 }), InputError, 'INVALID_LIMIT');
        await expectDomainError(store.scanAgentHeads({ limit: 1001 }), InputError, 'INVALID_LIMIT');
        await expectDomainError(store.getAgents(Array.from({ length: 1001 }, (_, i) => `a${i}`)), InputError, 'INVALID_LIMIT');
        await expectDomainError(store.scanAgents({ limit: 1001 }), InputError, 'INVALID_LIMIT');
      });
    });

    describe('countAgents', () => {
      it('is empty for an empty store', async () => {
        expect(await store.countAgents()).toEqual([]);
      });

      it('counts per tenant and phase, follows status updates and deletes, and returns numbers', async () => {
        const setPhase = async (a: Agent, phase: Phase): Promise<Agent> =>
          store.updateAgent(a.id, a.version, { status: { ...a.status, phase }, updatedAt: BASE_MS + 100 });
        const a = await createMany(store, 3, () => ({ tenantId: 't-a' }));
        const b = await createMany(store, 2, () => ({ tenantId: 't-b' }));
        await setPhase(a[0]!, 'Running');
        await setPhase(a[1]!, 'Running');
        const failed = await setPhase(b[0]!, 'Failed');
        const sorted = (rows: { tenantId: string; phase: Phase; count: number }[]) =>
          [...rows].sort((x, y) => `${x.tenantId}/${x.phase}`.localeCompare(`${y.tenantId}/${y.phase}`));
        const counts = await store.countAgents();
        expect(sorted(counts)).toEqual([
          { tenantId: 't-a', phase: 'Pending', count: 1 },
          { tenantId: 't-a', phase: 'Running', count: 2 },
          { tenantId: 't-b', phase: 'Failed', count: 1 },
          { tenantId: 't-b', phase: 'Pending', count: 1 },
        ]);
        for (const c of counts) expect(typeof c.count).toBe('number');
        await store.deleteAgent(failed.id);
        await store.deleteAgent(b[1]!.id);
        expect(sorted(await store.countAgents())).toEqual([
          { tenantId: 't-a', phase: 'Pending', count: 1 },
          { tenantId: 't-a', phase: 'Running', count: 2 },
        ]);
      });
    });

    describe('events', () => {
      it('appends with increasing numeric ids and reads back exactly, oldest first', async () => {
        const plain = newEvent({ time: BASE_MS + 1 });
        const withData = newEvent({ time: BASE_MS + 2, type: 'Warning', reason: 'Unschedulable', data: { scores: { n1: 10, n2: 7.5 }, nodes: ['n1', 'n2'] } });
        const withNull = newEvent({ time: BASE_MS + 3, data: null });
        const e1 = await store.appendEvent(plain);
        const e2 = await store.appendEvent(withData);
        const e3 = await store.appendEvent(withNull);
        expect(typeof e1.id).toBe('number');
        expect(e2.id).toBeGreaterThan(e1.id);
        expect(e3.id).toBeGreaterThan(e2.id);
        expect(e1).toEqual({ ...plain, id: e1.id });
        expect('data' in e1).toBe(false);
        const listed = await store.listEvents();
        expect(listed).toEqual([e1, e2, e3]);
        expect('data' in listed[0]!).toBe(false);
        expect(listed[2]!.data).toBeNull();
        expect(typeof listed[0]!.time).toBe('number');
      });

      it('filters by tenant, object, time and id, and limits', async () => {
        const a = await store.appendEvent(newEvent({ tenantId: 't1', objectKind: 'Agent', objectId: 'a1', time: BASE_MS + 10 }));
        const b = await store.appendEvent(newEvent({ tenantId: 't1', objectKind: 'Node', objectId: 'a1', time: BASE_MS + 20 }));
        const c = await store.appendEvent(newEvent({ tenantId: 't2', objectKind: 'Agent', objectId: 'a2', time: BASE_MS + 30 }));
        const d = await store.appendEvent(newEvent({ tenantId: 't1', objectKind: 'Agent', objectId: 'a1', time: BASE_MS + 40 }));
        expect(await store.listEvents({ tenantId: 't1' })).toEqual([a, b, d]);
        expect(await store.listEvents({ objectKind: 'Agent' })).toEqual([a, c, d]);
        expect(await store.listEvents({ objectKind: 'Agent', objectId: 'a1' })).toEqual([a, d]);
        expect(await store.listEvents({ objectId: 'a2' })).toEqual([c]);
        expect(await store.listEvents({ sinceMs: BASE_MS + 20 })).toEqual([b, c, d]);
        expect(await store.listEvents({ afterId: b.id })).toEqual([c, d]);
        expect(await store.listEvents({ afterId: d.id })).toEqual([]);
        expect(await store.listEvents({ limit: 2 })).toEqual([a, b]);
        expect(await store.listEvents({ afterId: a.id, limit: 2 })).toEqual([b, c]);
        expect(await store.listEvents({ tenantId: 't1', objectKind: 'Agent', sinceMs: BASE_MS + 11, afterId: 0 })).toEqual([d]);
        await expectDomainError(store.listEvents({ limit: -1 }), InputError, 'INVALID_LIMIT');
      });

      it('gives concurrent appends distinct ids', async () => {
        const events = await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendEvent(newEvent({ reason: `R${i}` }))));
        expect(new Set(events.map((e) => e.id)).size).toBe(20);
        expect((await store.listEvents()).map((e) => e.id)).toEqual(events.map((e) => e.id).sort((x, y) => x - y));
      });

      it('prunes events strictly older than the given time and counts them', async () => {
        const old1 = await store.appendEvent(newEvent({ time: BASE_MS }));
        const old2 = await store.appendEvent(newEvent({ time: BASE_MS + 1 }));
        const edge = await store.appendEvent(newEvent({ time: BASE_MS + 2 }));
        const fresh = await store.appendEvent(newEvent({ time: BASE_MS + 3 }));
        expect(await store.pruneEvents(BASE_MS + 2)).toBe(2);
        expect(await store.listEvents()).toEqual([edge, fresh]);
        expect(await store.pruneEvents(BASE_MS + 2)).toBe(0);
        expect([old1, old2].every((e) => typeof e.id === 'number')).toBe(true);
      });
    });

    describe('node states', () => {
      it('is empty at first; put inserts, a second put replaces; listed by id', async () => {
        expect(await store.listNodeStates()).toEqual([]);
        await store.putNodeState({ id: 'node-b', cordoned: true, unhealthy: false, updatedAt: BASE_MS + 1 });
        await store.putNodeState({
          id: 'node-a',
          cordoned: false,
          unhealthy: true,
          labels: { zone: 'eu-1', 'example.com/pool': 'gpu' },
          taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }, { key: 'spot', effect: 'PreferNoSchedule' }],
          updatedAt: BASE_MS + 2,
        });
        expect(await store.listNodeStates()).toEqual([
          {
            id: 'node-a',
            cordoned: false,
            unhealthy: true,
            labels: { zone: 'eu-1', 'example.com/pool': 'gpu' },
            taints: [{ key: 'gpu', value: 'true', effect: 'NoSchedule' }, { key: 'spot', effect: 'PreferNoSchedule' }],
            updatedAt: BASE_MS + 2,
          },
          { id: 'node-b', cordoned: true, unhealthy: false, updatedAt: BASE_MS + 1 },
        ]);
        await store.putNodeState({ id: 'node-a', cordoned: true, unhealthy: false, updatedAt: BASE_MS + 3 });
        const [a] = await store.listNodeStates();
        // Overrides not given are cleared: a put is the whole state.
        expect(a).toEqual({ id: 'node-a', cordoned: true, unhealthy: false, updatedAt: BASE_MS + 3 });
      });

      it('concurrent puts of one node leave exactly one row', async () => {
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.putNodeState({ id: 'n', cordoned: i % 2 === 0, unhealthy: false, updatedAt: BASE_MS + i })));
        const states = await store.listNodeStates();
        expect(states).toHaveLength(1);
        expect(states[0]!.id).toBe('n');
      });
    });

    describe('settings', () => {
      it('is undefined until set, then the first writer wins', async () => {
        expect(await store.getSetting('admin-token-hash')).toBeUndefined();
        expect(await store.putSettingIfAbsent('admin-token-hash', 'first')).toBe('first');
        expect(await store.putSettingIfAbsent('admin-token-hash', 'second')).toBe('first');
        expect(await store.getSetting('admin-token-hash')).toBe('first');
        expect(await store.getSetting('other')).toBeUndefined();
      });

      it('agrees on one value among 20 concurrent writers', async () => {
        const values = await Promise.all(Array.from({ length: 20 }, (_, i) => store.putSettingIfAbsent('race', `v${i}`)));
        expect(new Set(values).size).toBe(1);
        expect(values[0]).toMatch(/^v\d+$/);
        expect(await store.getSetting('race')).toBe(values[0]);
      });
    });

    describe('tenancy: tenants, quota counters, queue admission, API keys, usage, audit', () => {
      const withResources = (cpuMillicores: number, memoryMiB: number, extra: Partial<NewAgent> = {}): NewAgent => {
        const base = newAgent({ tenantId: 'quota-t', ...extra });
        return { ...base, spec: { ...base.spec, resources: { ...base.spec.resources, cpuMillicores, memoryMiB, gpu: 0 } } };
      };
      // Both ways of writing a status must keep the books the same way.
      let viaCopy = false;
      const setPhase = async (id: string, phase: Phase, at = BASE_MS + 1000): Promise<Agent> => {
        const a = (await store.getAgent(id))!;
        const update = { status: { ...a.status, phase }, updatedAt: at };
        if (!viaCopy) return store.updateAgent(id, a.version, update);
        const { agent } = await store.updateAgentWithEvents(a, update, []);
        expect(await store.getAgent(id)).toEqual(agent);
        return agent;
      };

      it('creates, reads, patches, lists and deletes tenants; TENANT_EXISTS, TENANT_HAS_AGENTS, TENANT_NOT_FOUND', async () => {
        const t = await store.createTenant({ id: 'acme', name: 'Acme', admission: 'reject', quota: { cpuMillicores: 2000, maxAgentGpu: 1 }, createdAt: BASE_MS });
        expect(t).toEqual({ id: 'acme', name: 'Acme', admission: 'reject', quota: { cpuMillicores: 2000, maxAgentGpu: 1 }, createdAt: BASE_MS, updatedAt: BASE_MS });
        await expectDomainError(store.createTenant({ id: 'acme', name: 'x', admission: 'reject', quota: {}, createdAt: BASE_MS }), ConflictError, 'TENANT_EXISTS');
        const patched = await store.updateTenant('acme', { admission: 'queue', quota: { cpuMillicores: null, memoryMiB: 512 }, updatedAt: BASE_MS + 5 });
        expect(patched).toMatchObject({ admission: 'queue', quota: { memoryMiB: 512, maxAgentGpu: 1 }, updatedAt: BASE_MS + 5 });
        expect(patched.quota.cpuMillicores).toBeUndefined();
        await expectDomainError(store.updateTenant('nope', { updatedAt: 1 }), NotFoundError, 'TENANT_NOT_FOUND');
        expect((await store.listTenants()).map((x) => x.id)).toContain('acme');
        const { agent } = await store.createAgent(newAgent({ tenantId: 'acme' }));
        await expectDomainError(store.deleteTenant('acme'), ConflictError, 'TENANT_HAS_AGENTS');
        await store.deleteAgent(agent.id);
        await store.putSecret({ tenantId: 'acme', name: 's1', keyId: 'k', ciphertext: 'c', createdAt: BASE_MS, updatedAt: BASE_MS });
        await store.deleteTenant('acme');
        expect(await store.getTenant('acme')).toBeUndefined();
        // A tenant created again under the same id must not inherit the old secrets.
        expect(await store.listSecrets('acme')).toEqual([]);
      });

      for (const via of ['updateAgent', 'updateAgentWithEvents'] as const) {
        it(`${via}: admission is exact: counters follow create, terminal phases, start and delete, each exactly once`, async () => {
          viaCopy = via === 'updateAgentWithEvents';
          await store.createTenant({ id: 'quota-t', name: 'q', admission: 'reject', quota: { cpuMillicores: 1000, memoryMiB: 1000 }, createdAt: BASE_MS });
          const a = (await store.createAgent(withResources(600, 100))).agent;
          await expectDomainError(store.createAgent(withResources(500, 100)), ForbiddenError, 'QUOTA_EXCEEDED');
          expect((await store.getTenantQuota('quota-t')).used).toEqual({ cpuMillicores: 600, memoryMiB: 100, gpu: 0, agents: 1, running: 1 });
          await setPhase(a.id, 'Running');
          await setPhase(a.id, 'Failed');
          await setPhase(a.id, 'Failed'); // idempotent: released once
          expect((await store.getTenantQuota('quota-t')).used).toEqual({ cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 1, running: 0 });
          const b = (await store.createAgent(withResources(500, 100))).agent;
          // Start again (terminal -> Pending) takes quota again, or is refused.
          await expectDomainError(setPhase(a.id, 'Pending'), ForbiddenError, 'QUOTA_EXCEEDED');
          expect((await store.getAgent(a.id))!.status.phase).toBe('Failed');
          await store.deleteAgent(b.id);
          await store.deleteAgent(b.id); // absent: no-op, no double release
          await setPhase(a.id, 'Pending');
          expect((await store.getTenantQuota('quota-t')).used).toEqual({ cpuMillicores: 600, memoryMiB: 100, gpu: 0, agents: 1, running: 1 });
          await store.deleteAgent(a.id);
          expect((await store.getTenantQuota('quota-t')).used).toEqual({ cpuMillicores: 0, memoryMiB: 0, gpu: 0, agents: 0, running: 0 });
        });
      }

      it('50 concurrent creates against room for 5 admit exactly 5; a rejected create leaves no record and no key', async () => {
        await store.createTenant({ id: 'quota-t', name: 'q', admission: 'reject', quota: { cpuMillicores: 500 }, createdAt: BASE_MS });
        const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => store.createAgent(withResources(100, 10, { name: `c-${i}` }), { key: `k-${i}`, requestHash: 'h' })));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
        expect((await store.listAgents({ tenantId: 'quota-t' })).items).toHaveLength(5);
        expect((await store.getTenantQuota('quota-t')).used.cpuMillicores).toBe(500);
        // The idempotency key of a refused create was not kept: the same key works once room frees.
        const refusedIndex = results.findIndex((r) => r.status === 'rejected');
        await store.deleteAgent((results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ agent: Agent }>).value.agent.id);
        const retry = await store.createAgent(withResources(100, 10, { name: `c-${refusedIndex}` }), { key: `k-${refusedIndex}`, requestHash: 'h' });
        expect(retry.created).toBe(true);
      });

      it('queue mode stores over-quota agents Pending/QuotaExceeded without quota; admitQueuedAgent admits when room frees', async () => {
        await store.createTenant({ id: 'quota-t', name: 'q', admission: 'queue', quota: { running: 1 }, createdAt: BASE_MS });
        const first = (await store.createAgent(withResources(100, 10))).agent;
        const queued = (await store.createAgent(withResources(100, 10))).agent;
        expect(queued.status).toMatchObject({ phase: 'Pending', reason: 'QuotaExceeded' });
        expect((await store.listQueuedAgents('quota-t')).map((a) => a.id)).toEqual([queued.id]);
        expect(await store.admitQueuedAgent(queued.id, BASE_MS + 10)).toBeUndefined();
        await setPhase(first.id, 'Succeeded');
        const admitted = await store.admitQueuedAgent(queued.id, BASE_MS + 20);
        expect(admitted?.status.reason).toBe('Admitted');
        expect(admitted?.version).toBe(queued.version + 1);
        expect(await store.admitQueuedAgent(queued.id, BASE_MS + 30)).toBeUndefined();
        expect(await store.listQueuedAgents('quota-t')).toEqual([]);
        expect((await store.getTenantQuota('quota-t')).used).toMatchObject({ running: 1, agents: 2, cpuMillicores: 100 });
      });

      it('API keys: create, get, list, revoke once', async () => {
        const key = { id: 'abcdefghijklmnop', tenantId: 't1', name: 'ci', role: 'member' as const, secretSha256: 'a'.repeat(64), createdAt: BASE_MS, createdBy: 'admin', expiresAt: BASE_MS + 10 };
        await store.createApiKey(key);
        expect(await store.getApiKey(key.id)).toEqual(key);
        expect(await store.listApiKeys('t1')).toEqual([key]);
        expect(await store.listApiKeys('t2')).toEqual([]);
        expect(await store.revokeApiKey('t2', key.id, BASE_MS + 1)).toBe(false);
        expect(await store.revokeApiKey('t1', key.id, BASE_MS + 1)).toBe(true);
        expect(await store.revokeApiKey('t1', key.id, BASE_MS + 2)).toBe(false);
        expect((await store.getApiKey(key.id))?.revokedAt).toBe(BASE_MS + 1);
      });

      for (const via of ['updateAgent', 'updateAgentWithEvents'] as const) {
        it(`${via}: usage: leaving Running closes the interval; accrueUsage is compare-and-set`, async () => {
          viaCopy = via === 'updateAgentWithEvents';
          const a = (await store.createAgent(withResources(500, 1024))).agent;
          await setPhase(a.id, 'Running', BASE_MS + 1000);
          const [acc] = await store.listAccruingAgents();
          expect(acc).toMatchObject({ agent: { id: a.id }, accruedUntil: BASE_MS + 1000 });
          const record = { tenantId: a.tenantId, agentId: a.id, agentName: a.name, labels: {}, startMs: BASE_MS + 1000, endMs: BASE_MS + 4000, cpuMillicores: 500, memoryMiB: 1024, gpu: 0, usedCpuMicros: 1500 };
          expect(await store.accrueUsage([{ agentId: a.id, expectedAccruedUntil: BASE_MS + 1000, accruedUntil: BASE_MS + 4000, record }])).toBe(1);
          expect(await store.accrueUsage([{ agentId: a.id, expectedAccruedUntil: BASE_MS + 1000, accruedUntil: BASE_MS + 4000, record }])).toBe(0);
          await setPhase(a.id, 'Stopping', BASE_MS + 6000);
          expect(await store.listAccruingAgents()).toEqual([]);
          const rows = await store.listUsage({ tenantId: a.tenantId });
          expect(rows.map((r) => [r.startMs - BASE_MS, r.endMs - BASE_MS, r.usedCpuMicros])).toEqual([
            [1000, 4000, 1500],
            [4000, 6000, undefined],
          ]);
          expect(await store.listUsage({ tenantId: a.tenantId, fromMs: BASE_MS + 4000, toMs: BASE_MS + 5000 })).toHaveLength(1);
        });
      }

      it('listUsage with openUntilMs adds the open interval of Running agents, clipped and stepped like the meter', async () => {
        const a = (await store.createAgent(withResources(500, 1024))).agent;
        const other = (await store.createAgent(newAgent({ tenantId: 'other-t' }))).agent;
        await store.updateAgent(other.id, other.version, { status: { ...other.status, phase: 'Running' }, updatedAt: BASE_MS });
        await setPhase(a.id, 'Running', BASE_MS + 1000);
        expect(await store.listUsage({ tenantId: a.tenantId })).toEqual([]);
        const open = await store.listUsage({ tenantId: a.tenantId, openUntilMs: BASE_MS + 4000 });
        expect(open).toEqual([
          { tenantId: a.tenantId, agentId: a.id, agentName: a.name, labels: a.labels, startMs: BASE_MS + 1000, endMs: BASE_MS + 4000, cpuMillicores: 500, memoryMiB: 1024, gpu: 0 },
        ]);
        // Outside the window: nothing; a step longer than the limit is cut like the meter's.
        expect(await store.listUsage({ tenantId: a.tenantId, toMs: BASE_MS + 1000, openUntilMs: BASE_MS + 4000 })).toEqual([]);
        expect((await store.listUsage({ tenantId: a.tenantId, openUntilMs: BASE_MS + 100_000, maxOpenStepMs: 5000 }))[0]).toMatchObject({ startMs: BASE_MS + 1000, endMs: BASE_MS + 6000 });
        // Closed by the meter: the ledger row and the open rest add up to the whole run.
        await store.accrueUsage([{ agentId: a.id, expectedAccruedUntil: BASE_MS + 1000, accruedUntil: BASE_MS + 3000, record: { ...open[0]!, endMs: BASE_MS + 3000 } }]);
        const both = await store.listUsage({ tenantId: a.tenantId, openUntilMs: BASE_MS + 4000 });
        expect(both.map((r) => [r.startMs - BASE_MS, r.endMs - BASE_MS])).toEqual([
          [1000, 3000],
          [3000, 4000],
        ]);
      });

      it('usage: lastUsageOfAgent finds a run\u2019s closing piece; fillUsedCpu sets used CPU only where there is none', async () => {
        const a = (await store.createAgent(withResources(500, 1024))).agent;
        const b = (await store.createAgent(withResources(500, 1024))).agent;
        for (const x of [a, b]) await setPhase(x.id, 'Running', BASE_MS + 1000);
        const record = { tenantId: a.tenantId, agentId: a.id, agentName: a.name, labels: {}, startMs: BASE_MS + 1000, endMs: BASE_MS + 4000, cpuMillicores: 500, memoryMiB: 1024, gpu: 0, usedCpuMicros: 1500 };
        expect(await store.accrueUsage([{ agentId: a.id, expectedAccruedUntil: BASE_MS + 1000, accruedUntil: BASE_MS + 4000, record }])).toBe(1);
        await setPhase(a.id, 'Succeeded', BASE_MS + 6000);
        await setPhase(b.id, 'Succeeded', BASE_MS + 7000);
        const closing = await store.lastUsageOfAgent(a.tenantId, a.id, BASE_MS, BASE_MS + 10_000);
        expect(closing).toMatchObject({ agentId: a.id, startMs: BASE_MS + 4000, endMs: BASE_MS + 6000 });
        expect(closing!.usedCpuMicros).toBeUndefined();
        // The window bounds the start; another agent's or tenant's rows never match.
        expect(await store.lastUsageOfAgent(a.tenantId, a.id, BASE_MS, BASE_MS + 4000)).toMatchObject({ startMs: BASE_MS + 1000, usedCpuMicros: 1500 });
        expect(await store.lastUsageOfAgent(a.tenantId, a.id, BASE_MS + 4001, BASE_MS + 10_000)).toBeUndefined();
        expect(await store.lastUsageOfAgent('other-t', a.id, BASE_MS, BASE_MS + 10_000)).toBeUndefined();
        expect((await store.lastUsageOfAgent(b.tenantId, b.id, BASE_MS, BASE_MS + 10_000))?.agentId).toBe(b.id);

        expect(await store.fillUsedCpu(closing!.id!, 2_500_000)).toBe(true);
        // Compare-and-set: a second fill (another replica) and a row that had a figure keep theirs.
        expect(await store.fillUsedCpu(closing!.id!, 9)).toBe(false);
        const first = (await store.lastUsageOfAgent(a.tenantId, a.id, BASE_MS, BASE_MS + 4000))!;
        expect(await store.fillUsedCpu(first.id!, 9)).toBe(false);
        expect(await store.fillUsedCpu(999_999_999, 9)).toBe(false);
        const rows = (await store.listUsage({ tenantId: a.tenantId })).filter((r) => r.agentId === a.id);
        expect(rows.map((r) => [r.startMs - BASE_MS, r.endMs - BASE_MS, r.usedCpuMicros])).toEqual([
          [1000, 4000, 1500],
          [4000, 6000, 2_500_000],
        ]);
        expect((await store.lastUsageOfAgent(b.tenantId, b.id, BASE_MS, BASE_MS + 10_000))?.usedCpuMicros).toBeUndefined();
      });

      it('audit: appends and lists newest first, by tenant', async () => {
        for (let i = 0; i < 3; i++) {
          await store.appendAudit({ time: BASE_MS + i, requestId: `r${i}`, subject: 'admin', role: 'platform-admin', tenantId: i === 1 ? 'b' : 'a', method: 'POST', route: '/api/v1/agents', status: 201, ...(i === 0 ? { targetId: 'x' } : {}) });
        }
        expect((await store.listAudit({})).map((a) => a.requestId)).toEqual(['r2', 'r1', 'r0']);
        const a = await store.listAudit({ tenantId: 'a' });
        expect(a.map((x) => x.requestId)).toEqual(['r2', 'r0']);
        expect(a[1]).toMatchObject({ targetId: 'x', status: 201, time: BASE_MS });
        expect(await store.listAudit({ tenantId: 'a', beforeId: a[0]!.id })).toHaveLength(1);
      });
    });
  });
}

function spec(): AgentSpec {
  return {
    image: 'busybox:1.36',
    command: ['sh', '-c'],
    args: ['echo "hello" && sleep 1'],
    env: { GREETING: 'grüß dich', EMPTY: '' },
    resources: { cpuMillicores: 250, memoryMiB: 128, gpu: 0, cpuLimitMillicores: 500, memoryLimitMiB: 256 },
    restartPolicy: 'OnFailure',
    schedulingPolicy: 'spread',
    priority: 0,
    nodeSelector: { zone: 'a' },
    tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
    timeoutSeconds: 600,
  };
}

let sequence = 0;
function newAgent(overrides: Partial<NewAgent> = {}): NewAgent {
  sequence += 1;
  const desired: DesiredState = 'running';
  return {
    id: randomUUID(),
    tenantId: 'tenant-a',
    name: `agent-${sequence}`,
    labels: {},
    spec: spec(),
    desired,
    status: { phase: 'Pending', restarts: 0, phaseSince: BASE_MS },
    createdAt: BASE_MS + sequence,
    ...overrides,
  };
}

function newEvent(overrides: Partial<NewPlatformEvent> = {}): NewPlatformEvent {
  return { tenantId: 'tenant-a', objectKind: 'Agent', objectId: 'agent-1', type: 'Normal', reason: 'Scheduled', message: 'bound to node n1', time: BASE_MS, ...overrides };
}

async function createMany(store: Store, count: number, extra: (i: number) => Partial<NewAgent> = () => ({})): Promise<Agent[]> {
  const out: Agent[] = [];
  for (let i = 0; i < count; i++) out.push((await store.createAgent(newAgent(extra(i)))).agent);
  return out;
}

const ids = (page: { items: Agent[] }): string[] => page.items.map((a) => a.id);
const sortedIds = (agents: Agent[]): string[] =>
  [...agents].sort((x, y) => x.createdAt - y.createdAt || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).map((a) => a.id);

async function expectDomainError(promise: Promise<unknown>, type: abstract new (...args: never[]) => Error, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${type.name}(${code})`).toBeInstanceOf(type);
  expect((error as { code?: string }).code).toBe(code);
}
