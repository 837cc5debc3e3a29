import { randomBytes } from 'node:crypto';
import { describe, it } from 'vitest';
import { MemoryBus } from '../../src/bus/memory-bus.js';
import { RedisBus } from '../../src/bus/redis-bus.js';
import { busConformance } from '../conformance/bus-conformance.js';
import { deleteRedisPrefix, requireRedis, testRedisUrl } from '../helpers/require-redis.js';

busConformance('memory', {
  open: async () => new MemoryBus(),
  settledDepth: async (bus) => bus.depth(),
});

const hasRedis = await requireRedis();
if (!hasRedis) {
  describe.skip(`Bus conformance: redis (unreachable at ${testRedisUrl})`, () => {
    it('skipped', () => undefined);
  });
} else {
  // One prefix per test, so parallel files and runs never share a queue.
  let prefix = '';
  busConformance('redis', {
    open: async () => {
      prefix = `ap-test-${randomBytes(6).toString('hex')}:`;
      const bus = new RedisBus({ url: testRedisUrl, prefix, depthRefreshMs: 100, pollIntervalMs: 200 });
      await bus.ready();
      return bus;
    },
    openPeer: async () => {
      const bus = new RedisBus({ url: testRedisUrl, prefix, depthRefreshMs: 100, pollIntervalMs: 200 });
      await bus.ready();
      return bus;
    },
    settledDepth: async (bus) => (bus as RedisBus).refreshDepth(),
    cleanup: async () => {
      await deleteRedisPrefix(prefix);
    },
  });
}
