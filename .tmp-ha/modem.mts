import { inspect } from 'node:util';
import { DockerRuntime } from '../src/runtime/docker/docker-runtime.js';
const rt = new DockerRuntime({ nodeId: 'local' });
const agent = (rt as unknown as { httpAgent: object }).httpAgent;
// Warm the pool with parallel requests, as 16 concurrent reconciles would.
const time = async (label: string) => {
  await Promise.all(Array.from({ length: 16 }, () => rt.list()));
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 4 }, () => rt.list()));
  console.log(label, 'ms per 80 list calls:', Math.round(performance.now() - t0));
};
await time('as is');
(agent as Record<symbol, unknown>)[inspect.custom] = () => '[http.Agent]';
await time('agent with custom inspect');
await rt.close();
