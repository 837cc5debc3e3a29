import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { InputError } from '../../domain/errors.js';
import type { EventJson } from '../api-types.js';
import type { PlatformClient } from '../client.js';
import type { CommandContext } from '../command-context.js';
import { toSinceParam } from '../duration.js';
import { formatTable } from '../output.js';

const COLUMNS = ['TIME', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'];
/** Watch rows are printed one by one, so columns get fixed widths up front (wider cells push the rest right). */
const WATCH_MIN_WIDTHS = [20, 7, 16, 24];
/** Pause before reconnecting when the server ended the stream (a restart, a proxy timeout). */
const RECONNECT_DELAY_MS = 1_000;
const DEFAULT_LIMIT = 1000;

interface EventsOptions {
  agent?: string;
  node?: string;
  since?: string;
  limit?: string;
  watch: boolean;
  output: string;
}

/** "2026-11-03T10:00:05.123Z" -> "2026-11-03T10:00:05Z": second precision reads better in a table. */
export function eventTime(time: string): string {
  const t = Date.parse(time);
  return Number.isNaN(t) ? time : new Date(Math.floor(t / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** One table row: TIME TYPE REASON OBJECT MESSAGE; the object is named by `objectName` (e.g. agent/web). */
export function eventRow(e: EventJson, objectName: string): string[] {
  return [eventTime(e.time), e.type, e.reason, objectName, e.message.replace(/\s*\n\s*/g, ' ')];
}

/** Pads every cell but the last to its width plus three spaces, as formatTable does. */
export function formatFixedRow(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd() + '\n';
}

/**
 * Names the objects of events as kubectl does (agent/NAME, node/ID). Agent names come from
 * one listing; an agent first seen later (watch) is looked up once; a deleted one keeps its id.
 */
class ObjectNamer {
  private readonly names = new Map<string, string | undefined>();

  constructor(
    private readonly client: PlatformClient,
    private readonly signal: AbortSignal,
  ) {}

  async prime(): Promise<void> {
    for (const a of await this.client.listAllAgents({}, this.signal)) this.names.set(a.id, a.name);
  }

  remember(id: string, name: string): void {
    this.names.set(id, name);
  }

  async nameOf(e: EventJson, lookUp: boolean): Promise<string> {
    if (e.objectKind !== 'Agent') return `${e.objectKind.toLowerCase()}/${e.objectId}`;
    if (!this.names.has(e.objectId) && lookUp) {
      const name = await this.client.getAgent(e.objectId, this.signal).then(
        (a) => a.name,
        () => undefined,
      );
      if (this.signal.aborted) this.signal.throwIfAborted();
      this.names.set(e.objectId, name);
    }
    return `agent/${this.names.get(e.objectId) ?? e.objectId}`;
  }
}

/** `agentctl events [--agent NAME|ID] [--node ID] [--since 10m] [--limit N] [-w] [-o table|json]`. */
export function registerEventsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('events')
    .description('List events (state changes, scheduling decisions, restarts, OOM kills, quota, node conditions), oldest first; -w follows new ones live')
    .option('--agent <agent>', 'only events of this agent (name or id)')
    .option('--node <node>', 'only events of this node (node events are visible to platform admins)')
    .option('--since <time>', 'only events newer than a duration (10m) or an RFC 3339 time')
    .option('--limit <n>', `at most N events before watching (default ${DEFAULT_LIMIT}, max 5000)`)
    .option('-w, --watch', 'after the list, stream new events until Ctrl-C', false)
    .option('-o, --output <format>', 'table, or json (one JSON object per line)', 'table')
    .action(async (opts: EventsOptions) => {
      if (opts.output !== 'table' && opts.output !== 'json') throw new InputError(`-o ${opts.output}: use table or json`, { value: opts.output }, 'INVALID_ARGUMENT');
      if (opts.agent !== undefined && opts.node !== undefined) throw new InputError('--agent and --node cannot be combined: node events and agent events are separate objects', {}, 'INVALID_ARGUMENT');
      let limit = DEFAULT_LIMIT;
      if (opts.limit !== undefined) {
        if (!/^[0-9]+$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 5000) throw new InputError(`--limit ${opts.limit}: must be a whole number from 1 to 5000`, { value: opts.limit }, 'INVALID_ARGUMENT');
        limit = Number(opts.limit);
      }
      const since = opts.since === undefined ? undefined : toSinceParam(opts.since);
      const client = await ctx.client();
      const namer = new ObjectNamer(client, ctx.signal);
      let agentId: string | undefined;
      if (opts.agent !== undefined) {
        const agent = await client.resolveAgent(opts.agent, ctx.signal);
        agentId = agent.id;
        namer.remember(agent.id, agent.name);
      } else if (opts.node === undefined && opts.output === 'table') {
        await namer.prime();
      }
      const filter = { agent: agentId, node: opts.node, since };
      // Before listing: where the stream starts when the list is empty (no id to resume after).
      const listedAt = new Date(ctx.now()).toISOString();
      const listed = await client.listEvents({ ...filter, limit }, ctx.signal);
      const json = opts.output === 'json';
      const rows: string[][] = [];
      for (const e of listed) {
        if (json) ctx.out(JSON.stringify(e) + '\n');
        else rows.push(eventRow(e, await namer.nameOf(e, false)));
      }
      if (listed.length >= limit) ctx.err(`showing the first ${listed.length} events; narrow with --since${opts.watch ? ' (the watch resumes after the last one shown)' : ''}\n`);

      if (!opts.watch) {
        if (!json && rows.length > 0) ctx.out(formatTable(COLUMNS, rows));
        if (!json && rows.length === 0) ctx.err('No events found.\n');
        return;
      }
      const widths = COLUMNS.slice(0, -1).map((h, i) => Math.max(WATCH_MIN_WIDTHS[i]!, h.length, ...rows.map((r) => r[i]!.length)));
      if (!json) {
        ctx.out(formatFixedRow(COLUMNS, widths));
        for (const r of rows) ctx.out(formatFixedRow(r, widths));
      }
      await watch(ctx, client, namer, filter, { lastId: maxId(listed), startSince: since ?? listedAt, json, widths });
    });
}

function maxId(events: readonly EventJson[]): number {
  let max = 0;
  for (const e of events) if (Number(e.id) > max) max = Number(e.id);
  return max;
}

/**
 * Follows the stream until Ctrl-C. It resumes after the last event shown (Last-Event-ID),
 * so nothing between the list and the stream is lost or shown twice; when the server ends
 * the stream (a restart) it reconnects the same way.
 */
async function watch(
  ctx: CommandContext,
  client: PlatformClient,
  namer: ObjectNamer,
  filter: { agent?: string | undefined; node?: string | undefined },
  o: { lastId: number; startSince: string; json: boolean; widths: number[] },
): Promise<void> {
  let lastId = o.lastId;
  for (;;) {
    const frames = client.streamEvents({ ...filter, since: lastId > 0 ? undefined : o.startSince }, { lastEventId: lastId > 0 ? String(lastId) : undefined, signal: ctx.signal });
    for await (const frame of frames) {
      let e: EventJson;
      try {
        e = JSON.parse(frame.data) as EventJson;
      } catch {
        continue; // not an event (a future frame kind); nothing to show
      }
      const id = Number(e.id);
      // Stored events carry increasing ids; transient ones (PhaseChanged) carry 0.
      if (id > 0) {
        if (id <= lastId) continue;
        lastId = id;
      }
      if (o.json) ctx.out(JSON.stringify(e) + '\n');
      else ctx.out(formatFixedRow(eventRow(e, await namer.nameOf(e, true)), o.widths));
    }
    await sleep(RECONNECT_DELAY_MS, undefined, { signal: ctx.signal });
  }
}
