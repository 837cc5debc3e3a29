import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** What the agent network may reach on the host: only the egress proxy. */
export interface HostFirewallRule {
  /** iptables chain name (at most 28 characters), owned by this rule set alone. */
  chain: string;
  /** Agent subnet, e.g. 172.18.0.0/16. */
  subnet: string;
  /** The proxy address on the network's gateway. */
  proxyIp: string;
  proxyPort: number;
}

/**
 * Host INPUT rules for an agent network. Containers on an --internal Docker network have no
 * route out, but still reach the host itself on the gateway (and the host's other addresses)
 * for any service listening on 0.0.0.0: the platform API, PostgreSQL, an SSH server. These
 * rules drop everything from the agent subnet to the host except new TCP connections to the
 * egress proxy and replies to connections the host opened (the exposed-port relays):
 *
 *   -I INPUT -s <subnet> -j <chain>
 *   <chain>: -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
 *            -d <proxyIp> -p tcp --dport <proxyPort> -j ACCEPT
 *            -j DROP
 *
 * Forwarded traffic (to other agents, to the outside) is Docker's part: the internal
 * network's isolation rules and, with ICC off, the bridge DROP rule.
 */
export class HostFirewall {
  constructor(private readonly iptables = 'iptables') {}

  /** True when iptables exists and this process may change rules. */
  async available(): Promise<boolean> {
    try {
      await exec(this.iptables, ['-w', '-S', 'INPUT']);
      return true;
    } catch {
      return false;
    }
  }

  /** Installs (or re-installs, idempotently) the rules. */
  async install(rule: HostFirewallRule): Promise<void> {
    if (!(await this.run(['-w', '-N', rule.chain], true))) await this.run(['-w', '-F', rule.chain]);
    await this.run(['-w', '-A', rule.chain, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
    await this.run(['-w', '-A', rule.chain, '-d', rule.proxyIp, '-p', 'tcp', '--dport', String(rule.proxyPort), '-j', 'ACCEPT']);
    await this.run(['-w', '-A', rule.chain, '-j', 'DROP']);
    const jump = ['INPUT', '-s', rule.subnet, '-j', rule.chain];
    if (!(await this.run(['-w', '-C', ...jump], true))) await this.run(['-w', '-I', ...jump]);
  }

  /** Removes the jump and the chain; missing pieces are fine. */
  async remove(rule: Pick<HostFirewallRule, 'chain' | 'subnet'>): Promise<void> {
    while (await this.run(['-w', '-D', 'INPUT', '-s', rule.subnet, '-j', rule.chain], true));
    await this.run(['-w', '-F', rule.chain], true);
    await this.run(['-w', '-X', rule.chain], true);
  }

  /** The chain's rules as `iptables -S` prints them (for tests and diagnostics). */
  async list(chain: string): Promise<string[]> {
    const { stdout } = await exec(this.iptables, ['-w', '-S', chain]);
    return stdout.split('\n').filter((l) => l.trim() !== '');
  }

  private async run(args: string[], tolerant = false): Promise<boolean> {
    try {
      await exec(this.iptables, args);
      return true;
    } catch (err) {
      if (tolerant) return false;
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(`iptables ${args.join(' ')} failed: ${stderr.trim() || String(err)}`);
    }
  }
}
