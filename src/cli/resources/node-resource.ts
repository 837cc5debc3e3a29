import type { NodeJson } from '../node-types.js';
import { describeNode, renderNodes } from '../node-output.js';
import { errorText } from '../error-text.js';
import type { ResourceKind } from '../resource-kind.js';

/** `get nodes [NAME...]` and `describe node NAME`; label selector (-l) filters the list client-side. */
export const nodeResource: ResourceKind = {
  names: ['nodes', 'node', 'no'],

  async get(ctx, names, options) {
    const client = await ctx.client();
    let nodes: NodeJson[];
    if (names.length === 0) {
      nodes = (await client.listNodes(ctx.signal)).filter((n) => Object.entries(options.labels ?? {}).every(([k, v]) => n.labels[k] === v));
      if (nodes.length === 0 && (options.output === 'table' || options.output === 'wide')) {
        ctx.err('No nodes found.\n');
        return;
      }
    } else {
      nodes = [];
      for (const name of names) {
        try {
          nodes.push(await client.getNode(name, ctx.signal));
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          ctx.err(errorText(err) + '\n');
          ctx.fail();
        }
      }
    }
    if (nodes.length) ctx.out(renderNodes(nodes, options.output, names.length === 1));
  },

  async describe(ctx, names) {
    const client = await ctx.client();
    const ids = names.length ? names : (await client.listNodes(ctx.signal)).map((n) => n.id);
    for (const [i, id] of ids.entries()) {
      try {
        const node = await client.getNode(id, ctx.signal);
        if (i > 0) ctx.out('\n\n');
        ctx.out(describeNode(node, ctx.now()));
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        ctx.err(errorText(err) + '\n');
        ctx.fail();
      }
    }
  },
};
