import { Command } from 'commander';
import { loadConfig, ConfigError, type Config } from './config.js';
import { buildPlatform } from './platform.js';
import { DomainError, UnavailableError } from './domain/errors.js';
import { rotateSecretKey } from './security/secret-key-rotation.js';

/** The configuration from the environment; a bad variable is named and the process exits 2. */
function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`agent-platform: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** `agent-platform serve` and the operator commands: wiring and signal handling only. */
const program = new Command('agent-platform').description('agent-platform control plane');

program
  .command('serve')
  .description('start the API server and controllers (config from AGENT_PLATFORM_* environment variables)')
  .action(async () => {
    const config = configOrExit();
    let platform;
    try {
      platform = await buildPlatform(config);
    } catch (err) {
      // A bad nodes file, rate card or secret key is a configuration mistake: say what to
      // fix and exit 2 like a bad variable, without a stack trace.
      if (err instanceof ConfigError || (err instanceof DomainError && !(err instanceof UnavailableError))) {
        process.stderr.write(`agent-platform: invalid configuration: ${err.message}${err instanceof DomainError ? ` (${err.code})` : ''}\n`);
        process.exit(2);
      }
      throw err;
    }
    if (platform.generatedAdminToken) {
      process.stderr.write(
        `\n  Generated admin token (shown once, stored hashed):\n\n    export AGENT_PLATFORM_ADMIN_TOKEN=${platform.generatedAdminToken}\n\n`,
      );
    }
    const address = await platform.start();
    process.stderr.write(`agent-platform listening on ${address} (store: ${platform.store.kind}, nodes: ${platform.runtimes.all().map((r) => `${r.nodeId}/${r.driver}`).join(', ')})\n`);
    let closing = false;
    const shutdown = (signal: string): void => {
      if (closing) process.exit(1);
      closing = true;
      process.stderr.write(`agent-platform: ${signal}, shutting down\n`);
      platform.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

const secrets = program.command('secrets').description('operator commands for tenant secrets');
secrets
  .command('rotate-key')
  .description(
    're-seal every secret with AGENT_PLATFORM_SECRET_KEY, opening old ones with AGENT_PLATFORM_SECRET_KEYS_OLD (same configuration as serve); exit 0 when all secrets are under the new key, 1 when some could not be opened, 2 on a configuration error',
  )
  .action(async () => {
    const config = configOrExit();
    // Ctrl-C stops between two secrets: every secret is re-sealed whole or not at all.
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort(new Error('interrupted (SIGINT); run the command again to finish')));
    process.once('SIGTERM', () => abort.abort(new Error('interrupted (SIGTERM); run the command again to finish')));
    let report;
    try {
      report = await rotateSecretKey(config, abort.signal);
    } catch (err) {
      if (err instanceof DomainError && !(err instanceof UnavailableError)) {
        process.stderr.write(`agent-platform: invalid configuration: ${err.message} (${err.code})\n`);
        process.exit(2);
      }
      throw err;
    }
    process.stdout.write(
      `re-sealed ${report.resealed} of ${report.total} secrets with key ${report.currentKeyId} (${report.alreadyCurrent} already current, ${report.failed.length} unreadable)\n`,
    );
    for (const f of report.failed) process.stderr.write(`agent-platform: secret ${f.tenantId}/${f.name} (key ${f.keyId}) left unchanged: ${f.reason}\n`);
    process.exit(report.failed.length > 0 ? 1 : 0);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`agent-platform: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
