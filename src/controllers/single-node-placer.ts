import type { Agent } from '../domain/agent.js';
import type { Placer, Placement } from './placer.js';

/** The embedded default before a node pool exists: everything goes to the one node. */
export class SingleNodePlacer implements Placer {
  constructor(private readonly nodeId: string) {}
  async place(_agent: Agent): Promise<Placement> {
    return { ok: true, nodeId: this.nodeId, gpuIds: [], message: `assigned to node ${this.nodeId} (single-node pool)` };
  }
  release(): void {}
}
