import type { PlatformClient } from './client.js';
import type { CliIo } from './io.js';

/** What every command handler gets: I/O, cancellation, a clock and a lazily built client. */
export interface CommandContext {
  io: CliIo;
  /** Aborted on Ctrl-C; pass it to every request and sleep. */
  signal: AbortSignal;
  now(): number;
  /** Built on first use from flags, env and config file, so `--help` never reads the config. */
  client(): Promise<PlatformClient>;
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  /** Records a non-zero exit code without stopping the command (e.g. one of several deletes failed). */
  fail(code?: number): void;
}
