import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/open-store.js';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { EventRecorder } from '../../src/controllers/event-recorder.js';
import { AgentService, type Principal } from '../../src/services/agent-service.js';
import { systemClock } from '../../src/domain/clock.js';
import type { CreateAgentRequest } from '../../src/api/schemas/agent-schema.js';

// Regression: a queued agent (Pending, QuotaExceeded, holding no quota) whose status was
// rewritten by a stop+start (or by the node evictor) became schedulable without admission.
describe('a queued agent cannot skip its tenant quota', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ap-queued-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stop then start of a queued agent keeps it queued and the counters exact', async () => {
    const store = await openStore(undefined, dir);
    const bus = new MemoryBus();
    const agents = new AgentService(store, bus, systemClock, new EventRecorder(store, bus, systemClock), { cpu: '100m', memory: '64Mi' });
    await store.createTenant({ id: 't1', name: 't1', admission: 'queue', quota: { cpuMillicores: 100 }, createdAt: Date.now() });
    const p: Principal = { subject: 'x', tenantId: 't1', role: 'tenant-admin' };
    const req = (name: string) => ({ name, image: 'agent-platform/busybox:latest' }) as CreateAgentRequest;
    await agents.create(p, req('a'));
    const b = await agents.create(p, req('b'));
    expect(b.agent.status.reason).toBe('QuotaExceeded');
    await agents.setDesired(p, b.agent.id, 'stopped');
    const restarted = await agents.setDesired(p, b.agent.id, 'running');
    expect(restarted.status).toMatchObject({ phase: 'Pending', reason: 'QuotaExceeded' });
    expect((await store.getTenantQuota('t1')).used.cpuMillicores).toBe(100);
    expect((await store.listQueuedAgents('t1')).map((x) => x.name)).toEqual(['b']);
    await store.close();
    await bus.close();
  });
});
