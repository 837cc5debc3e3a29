import type { Runtime } from './runtime.js';

/** The runtimes of all nodes, by node id. */
export class RuntimeRegistry {
  private readonly byNode = new Map<string, Runtime>();
  constructor(runtimes: Runtime[] = []) {
    for (const r of runtimes) this.add(r);
  }
  add(runtime: Runtime): void {
    this.byNode.set(runtime.nodeId, runtime);
  }
  get(nodeId: string): Runtime | undefined {
    return this.byNode.get(nodeId);
  }
  all(): Runtime[] {
    return [...this.byNode.values()];
  }
  async close(): Promise<void> {
    await Promise.allSettled(this.all().map((r) => r.close()));
  }
}
