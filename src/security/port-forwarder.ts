import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AgentEndpoint } from '../domain/agent.js';

interface Forward {
  server: Server;
  sockets: Set<Socket>;
  endpoint: AgentEndpoint;
  targetIp: string;
}

/**
 * Publishes agent ports on the host's loopback address: a TCP relay from 127.0.0.1:<random>
 * to <container ip>:<port>. Docker's own publishing cannot be used: it does not publish
 * ports of containers on an --internal network, and with a non-internal network the agent
 * would get a route out. Binding to 127.0.0.1 only keeps the port off every other interface.
 */
export class PortForwarder {
  private readonly forwards = new Map<string, Forward[]>();

  /** Endpoints currently open for the agent. */
  endpointsOf(agentId: string): AgentEndpoint[] {
    return (this.forwards.get(agentId) ?? []).map((f) => f.endpoint);
  }

  /** True when the agent's ports are open towards `targetIp`. */
  isOpen(agentId: string, targetIp: string, ports: readonly number[]): boolean {
    const open = this.forwards.get(agentId) ?? [];
    return open.length === ports.length && open.every((f) => f.targetIp === targetIp && ports.includes(f.endpoint.port));
  }

  /** Opens one relay per port (closing earlier ones of the agent first); returns the endpoints. */
  async open(agentId: string, targetIp: string, ports: readonly number[], hostIp = '127.0.0.1'): Promise<AgentEndpoint[]> {
    await this.close(agentId);
    const opened: Forward[] = [];
    try {
      for (const port of ports) opened.push(await this.listen(targetIp, port, hostIp));
    } catch (err) {
      await Promise.all(opened.map((f) => stop(f)));
      throw err;
    }
    this.forwards.set(agentId, opened);
    return opened.map((f) => f.endpoint);
  }

  async close(agentId: string): Promise<void> {
    const open = this.forwards.get(agentId);
    if (!open) return;
    this.forwards.delete(agentId);
    await Promise.all(open.map((f) => stop(f)));
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.forwards.keys()].map((id) => this.close(id)));
  }

  private async listen(targetIp: string, port: number, hostIp: string): Promise<Forward> {
    const sockets = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = connect({ host: targetIp, port });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.once('close', () => {
          sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: hostIp, port: 0, exclusive: true }, () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('port forwarder has no TCP address');
    return { server, sockets, targetIp, endpoint: { port, hostIp, hostPort: address.port } };
  }
}

function stop(f: Forward): Promise<void> {
  for (const s of f.sockets) s.destroy();
  return new Promise((resolve) => f.server.close(() => resolve()));
}
