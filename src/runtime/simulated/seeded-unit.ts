/**
 * A number in [0, 1) that depends only on (seed, key, n): the same agent's n-th run
 * gets the same draw whatever order runs start in, so a seeded failure pattern
 * repeats exactly across test runs and across concurrent schedules. cyrb53-style
 * mixing (two 32-bit multiply-xorshift lanes, 53 bits out): fast, well spread, not
 * cryptographic, which a simulation does not need.
 */
export function seededUnit(seed: number, key: string, n: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ Math.imul(seed, 0x9e3779b1);
  for (let i = 0; i < key.length; i++) {
    const ch = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ n, 2246822507);
  h2 = Math.imul(h2 ^ Math.imul(n, 0x85ebca6b), 3266489909);
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  const bits53 = 2_097_152 * (h2 >>> 0) + (h1 >>> 11);
  return bits53 / 2 ** 53;
}
