import type { CommandContext } from './command-context.js';
import type { OutputFormat } from './output.js';

/** Options `get` passes to a resource kind; kinds ignore what does not apply to them. */
export interface GetOptions {
  output: OutputFormat;
  /** From -l k=v,k2=v2. */
  labels?: Record<string, string> | undefined;
  /** From --phase Running,Pending. */
  phases?: string[] | undefined;
}

/**
 * One kind of object `get` and `describe` know (agents today; nodes, tenants later).
 * Adding a kind is one object plus one line in the registry.
 */
export interface ResourceKind {
  /** Canonical plural first, then accepted aliases: ['agents', 'agent', 'ag']. */
  names: readonly string[];
  /** Lists (no names) or fetches the named objects, and prints them. */
  get(ctx: CommandContext, names: readonly string[], options: GetOptions): Promise<void>;
  /** Prints the human-readable description of each named object (all when none named). */
  describe(ctx: CommandContext, names: readonly string[]): Promise<void>;
}
