import { Command, CommanderError } from 'commander';
import { PlatformClient } from './client.js';
import { clientVersion } from './client-version.js';
import type { CommandContext } from './command-context.js';
import { configFileLocation, readConfigFile } from './config-file.js';
import { resolveConnectionSettings } from './connection-settings.js';
import { parseDurationMs } from './duration.js';
import { errorText } from './error-text.js';
import type { CliIo } from './io.js';
import { registerCreateCommand } from './commands/create-command.js';
import { registerDeleteCommand } from './commands/delete-command.js';
import { registerDescribeCommand } from './commands/describe-command.js';
import { registerGetCommand } from './commands/get-command.js';
import { registerLifecycleCommands } from './commands/lifecycle-commands.js';
import { registerLogsCommand } from './commands/logs-command.js';
import { registerNodeCommands } from './commands/node-commands.js';
import { registerVersionCommand } from './commands/version-command.js';
import { registerWaitCommand } from './commands/wait-command.js';
import { registerUsageCommand } from './commands/usage-command.js';
import { registerEventsCommand } from './commands/events-command.js';
import { registerTopCommand } from './commands/top-command.js';

interface GlobalOptions {
  server?: string;
  token?: string;
  config?: string;
  requestTimeout: string;
}

/** Exit code for an interrupted command, as shells report SIGINT. */
const EXIT_INTERRUPTED = 130;

/**
 * Runs agentctl with `argv` (arguments only, without node and script) and returns the exit
 * code. Never calls process.exit and never throws, so tests can run it in-process.
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const signal = io.signal ?? new AbortController().signal;
  let exitCode = 0;
  const program = new Command('agentctl')
    .description('Command-line client for agent-platform: run AI agents as locked-down containers')
    .option('--server <url>', 'platform URL (env AGENTCTL_SERVER, AGENT_PLATFORM_URL; default http://127.0.0.1:8080)')
    .option('--token <token>', 'bearer token (env AGENTCTL_TOKEN, AGENT_PLATFORM_ADMIN_TOKEN)')
    .option('--config <path>', 'config file (env AGENTCTL_CONFIG; default ~/.config/agentctl/config.yaml)')
    .option('--request-timeout <duration>', 'timeout of one API request', '30s')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .showSuggestionAfterError()
    .version(clientVersion(), '--version', 'print the client version');

  let clientPromise: Promise<PlatformClient> | undefined;
  const buildClient = async (): Promise<PlatformClient> => {
    const flags = program.opts<GlobalOptions>();
    const location = configFileLocation(io.env, flags.config);
    const file = await readConfigFile(location);
    const settings = resolveConnectionSettings({ flags, env: io.env, file, filePath: location?.path });
    return new PlatformClient({
      baseUrl: settings.server,
      token: settings.token,
      requestTimeoutMs: parseDurationMs(flags.requestTimeout, '--request-timeout'),
      userAgent: `agentctl/${clientVersion()}`,
    });
  };
  const ctx: CommandContext = {
    io,
    signal,
    now: io.now ?? Date.now,
    client: () => (clientPromise ??= buildClient()),
    out: (text) => void io.stdout.write(text),
    err: (text) => void io.stderr.write(text),
    fail: (code = 1) => {
      exitCode = exitCode || code;
    },
  };

  // One register call per command group; later groups (nodes, cordon, drain, top, events, usage) go here.
  registerCreateCommand(program, ctx);
  registerGetCommand(program, ctx);
  registerDescribeCommand(program, ctx);
  registerLogsCommand(program, ctx);
  registerLifecycleCommands(program, ctx);
  registerDeleteCommand(program, ctx);
  registerNodeCommands(program, ctx);
  registerWaitCommand(program, ctx);
  registerUsageCommand(program, ctx);
  registerEventsCommand(program, ctx);
  registerTopCommand(program, ctx);
  registerVersionCommand(program, ctx);

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    // commander has already printed its own usage errors and help
    if (err instanceof CommanderError) return err.exitCode;
    if (signal.aborted) return EXIT_INTERRUPTED;
    io.stderr.write(errorText(err) + '\n');
    return 1;
  }
  return exitCode;
}
