import type { AgentJson, EventJson } from '../api-types.js';
import type { CommandContext } from '../command-context.js';
import { describeAgent } from '../describe-agent.js';
import { errorText } from '../error-text.js';
import { renderAgents } from '../output.js';
import type { ResourceKind } from '../resource-kind.js';

/**
 * Resolves each NAME|ID; a name that fails is reported on stderr and marks the exit code,
 * the rest are still shown (kubectl does the same for `get pod a b`).
 */
async function resolveEach(ctx: CommandContext, names: readonly string[]): Promise<AgentJson[]> {
  const client = await ctx.client();
  const found: AgentJson[] = [];
  for (const name of names) {
    try {
      found.push(await client.resolveAgent(name, ctx.signal));
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      ctx.err(errorText(err) + '\n');
      ctx.fail();
    }
  }
  return found;
}

export const agentResource: ResourceKind = {
  names: ['agents', 'agent', 'ag'],

  async get(ctx, names, options) {
    const client = await ctx.client();
    if (names.length === 0) {
      const agents = await client.listAllAgents({ labels: options.labels, phase: options.phases }, ctx.signal);
      if (agents.length === 0 && (options.output === 'table' || options.output === 'wide')) {
        ctx.err('No agents found.\n');
        return;
      }
      ctx.out(renderAgents(agents, options.output, { nowMs: ctx.now() }));
      return;
    }
    const agents = await resolveEach(ctx, names);
    if (agents.length) ctx.out(renderAgents(agents, options.output, { nowMs: ctx.now(), single: names.length === 1 }));
  },

  async describe(ctx, names) {
    const client = await ctx.client();
    const agents = names.length ? await resolveEach(ctx, names) : await client.listAllAgents({}, ctx.signal);
    for (const [i, agent] of agents.entries()) {
      let events: EventJson[] | undefined;
      let eventsError: string | undefined;
      try {
        events = await client.listAgentEvents(agent.id, ctx.signal);
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        // the description is still useful without events; say why they are missing
        eventsError = errorText(err).replace(/^Error: /, '');
      }
      if (i > 0) ctx.out('\n\n');
      ctx.out(describeAgent(agent, events, { nowMs: ctx.now(), ...(eventsError ? { eventsError } : {}) }));
    }
  },
};
