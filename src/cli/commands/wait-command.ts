import { setTimeout as sleep } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import { DomainError } from '../../domain/errors.js';
import { ApiError } from '../api-error.js';
import type { AgentJson } from '../api-types.js';
import type { CommandContext } from '../command-context.js';
import { formatDurationMs, parseDurationMs } from '../duration.js';
import { Spinner } from '../spinner.js';
import { evaluateWait, parseWaitCondition } from '../wait-condition.js';

/** Between polls. Fast enough to feel immediate, slow enough to be no load on the API. */
const DEFAULT_POLL_INTERVAL_MS = 400;

const isNotFound = (err: unknown): boolean => err instanceof ApiError && err.status === 404;

/**
 * `agentctl wait NAME|ID --for=phase=Succeeded [--timeout 60s]` (or `--for=delete`).
 * Polls the agent; exits 0 when the condition holds, 1 on timeout or when the agent
 * settles in a terminal phase that is not the wanted one.
 */
export function registerWaitCommand(program: Command, ctx: CommandContext): void {
  program
    .command('wait')
    .description('Wait until an agent reaches a phase (or is deleted)')
    .argument('<agent>', 'name or id')
    .requiredOption('--for <condition>', 'phase=<Phase>[,<Phase>...] or delete')
    .option('--timeout <duration>', 'give up after this long, e.g. 30s, 2m', '30s')
    .addOption(new Option('--poll-interval <duration>', 'time between polls').default(`${DEFAULT_POLL_INTERVAL_MS}ms`).hideHelp())
    .action(async (nameOrId: string, opts: { for: string; timeout: string; pollInterval: string }) => {
      const condition = parseWaitCondition(opts.for);
      const timeoutMs = parseDurationMs(opts.timeout, '--timeout');
      const pollMs = parseDurationMs(opts.pollInterval, '--poll-interval') || DEFAULT_POLL_INTERVAL_MS;
      const wanted = condition.kind === 'delete' ? 'deleted' : `phase ${condition.phases.join(' or ')}`;
      const client = await ctx.client();
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([ctx.signal, timeout]);
      const startedMs = ctx.now();
      const spinner = new Spinner(ctx.io.stderr);
      let last: AgentJson | undefined;
      try {
        try {
          last = await client.resolveAgent(nameOrId, signal);
        } catch (err) {
          if (condition.kind === 'delete' && err instanceof DomainError && err.code === 'AGENT_NOT_FOUND') {
            ctx.out(`agent/${nameOrId} condition met (deleted)\n`);
            return;
          }
          throw err;
        }
        const id = last.id;
        const name = last.name;
        spinner.start(`waiting for agent/${name} to be ${wanted}`);
        for (;;) {
          if (condition.kind === 'phase') {
            const verdict = evaluateWait(last, condition.phases);
            if (verdict.done) {
              spinner.stop();
              ctx.out(`agent/${name} condition met (phase ${last.status.phase})\n`);
              return;
            }
            if (verdict.stuck) throw new DomainError('WAIT_CONDITION_UNREACHABLE', verdict.why, { agentId: id, phase: last.status.phase, reason: last.status.reason, message: last.status.message, exitCode: last.status.exitCode });
          }
          spinner.update(`waiting for agent/${name} to be ${wanted}: phase ${last.status.phase}${last.status.reason ? ` (${last.status.reason})` : ''}, ${formatDurationMs(ctx.now() - startedMs)}`);
          await sleep(pollMs, undefined, { signal });
          try {
            last = await client.getAgent(id, signal);
          } catch (err) {
            if (!isNotFound(err)) throw err;
            if (condition.kind === 'delete') {
              spinner.stop();
              ctx.out(`agent/${name} condition met (deleted)\n`);
              return;
            }
            throw new DomainError('AGENT_NOT_FOUND', `agent "${name}" was deleted while waiting for ${wanted}`, { agentId: id });
          }
        }
      } catch (err) {
        if (timeout.aborted && !ctx.signal.aborted) {
          const now = last ? `; it is ${last.status.phase}${last.status.reason ? ` (reason ${last.status.reason})` : ''}` : '';
          throw new DomainError('WAIT_TIMEOUT', `timed out after ${formatDurationMs(timeoutMs)} waiting for agent "${last?.name ?? nameOrId}" to be ${wanted}${now}`, { timeoutMs });
        }
        throw err;
      } finally {
        spinner.stop();
      }
    });
}
