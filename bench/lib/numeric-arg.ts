/** The number after `--name` on the command line, or `fallback` when the flag is absent. */
export function numericArg(name: string, fallback: number, argv: readonly string[] = process.argv): number {
  const i = argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const value = Number(argv[i + 1]);
  if (!Number.isFinite(value)) throw new Error(`--${name} takes a number, got "${argv[i + 1] ?? ''}"`);
  return value;
}
