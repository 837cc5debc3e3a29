/**
 * One held string per distinct value. Store reads and string builders hand out a fresh copy
 * of the same id on every call; structures that keep one per agent (usage views, placer
 * bindings) share the held one instead, which saves a copy per agent at 100,000 agents.
 * Bounded: past `limit` distinct values it starts over, so a pathological input costs
 * sharing, never unbounded memory.
 */
export class StringInterner {
  private readonly held = new Map<string, string>();

  /** @param limit distinct values kept before starting over (default 16,384) */
  constructor(private readonly limit = 16_384) {}

  /** The string already held for `value`, else `value` (then held). */
  intern(value: string): string {
    const held = this.held.get(value);
    if (held !== undefined) return held;
    if (this.held.size >= this.limit) this.held.clear();
    this.held.set(value, value);
    return value;
  }
}
