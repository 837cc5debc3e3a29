import { it } from 'vitest';
import { TestPlatform, uniqueName, sleep } from '/work/main/test/integration/harness.js';
it('probe', async () => {
  const t0 = Date.now();
  const log = (m: string) => console.log(Date.now() - t0, m);
  const p = await TestPlatform.start();
  try {
    const bb = 'agent-platform/busybox:latest';
    const b = await p.create({ name: uniqueName('long'), image: bb, command: ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'] });
    await p.waitForPhase(b.id, 'Running');
    log('running');
    for (let i = 0; i < 2; i++) {
      const ac = new AbortController();
      const res = await fetch(`${p.baseUrl}/api/v1/agents/${b.id}/logs?follow=true`, { headers: { authorization: `Bearer ${p.token}` }, signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      ac.abort();
      log('aborted ' + i);
    }
    await sleep(500);
    const r = await p.request('GET', `/api/v1/agents/${b.id}`);
    log('get ' + r.status);
  } finally {
    log('closing');
    await p.platform.controller.stop(); log('controller stopped');
    await p.platform.app.close(); log('app closed');
    await p.close();
    log('closed');
  }
}, 120000);
