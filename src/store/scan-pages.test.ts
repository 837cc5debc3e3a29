import { describe, expect, it } from 'vitest';
import { scanPages } from './scan-pages.js';

describe('scanPages', () => {
  it('asks each page with the previous nextAfterId and stops after the page without one', async () => {
    const asked: (string | undefined)[] = [];
    const pages = [{ items: [1, 2], nextAfterId: 'b' }, { items: [], nextAfterId: 'c' }, { items: [3] }];
    const got: number[][] = [];
    for await (const items of scanPages(async (afterId) => (asked.push(afterId), pages[asked.length - 1]!))) got.push(items);
    expect(asked).toEqual([undefined, 'b', 'c']);
    expect(got).toEqual([[1, 2], [], [3]]);
  });

  it('throws the abort reason before asking for another page', async () => {
    const abort = new AbortController();
    let calls = 0;
    const run = async (): Promise<void> => {
      for await (const _ of scanPages(async () => (calls++, { items: [calls], nextAfterId: 'x' }), abort.signal)) abort.abort(new Error('stopped'));
    };
    await expect(run()).rejects.toThrow('stopped');
    expect(calls).toBe(1);
  });
});
