import { it } from 'vitest';
import { readdirSync, readlinkSync } from 'node:fs';
import { TestPlatform, uniqueName, sleep } from '/work/main/test/integration/harness.js';
const sockets = () => readdirSync('/proc/self/fd').map((f) => { try { return readlinkSync('/proc/self/fd/' + f); } catch { return ''; } }).filter((l) => l.startsWith('socket:')).length;
it('probe', async () => {
  const p = await TestPlatform.start();
  try {
    const bb = 'agent-platform/busybox:latest';
    const show = (label: string, r: { status: number; text: string; headers?: Headers }) => console.log(label, r.status, r.headers?.get('content-type'), r.text.slice(0, 300));
    const a = await p.create({ name: uniqueName('noimg'), image: 'nope/nope:1', command: ['true'] });
    await p.waitForPhase(a.id, 'Failed');
    show('logs noimg', await p.request('GET', `/api/v1/agents/${a.id}/logs`));
    show('logs noimg follow', await p.request('GET', `/api/v1/agents/${a.id}/logs?follow=true`));
    const b = await p.create({ name: uniqueName('long'), image: bb, command: ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'] });
    await p.waitForPhase(b.id, 'Running');
    await sleep(1000);
    console.log('sockets before', sockets());
    for (let i = 0; i < 5; i++) {
      const ac = new AbortController();
      const res = await fetch(`${p.baseUrl}/api/v1/agents/${b.id}/logs?follow=true`, { headers: { authorization: `Bearer ${p.token}` }, signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      ac.abort();
    }
    console.log('sockets right after aborts', sockets());
    await sleep(2000);
    console.log('sockets 2s after aborts', sockets());
  } finally {
    await p.close();
  }
}, 120000);
