import { describe, expect, it } from 'vitest';
import { StringInterner } from './string-interner.js';

describe('StringInterner', () => {
  it('hands back the first string it saw for a value, and starts over past its limit', () => {
    const strings = new StringInterner(2);
    // Built at run time, so the two copies are distinct strings with the same value.
    const first = ['ten', 'ant'].join('');
    const again = ['te', 'nant'].join('');
    expect(strings.intern(first)).toBe(first);
    expect(strings.intern(again)).toBe(first);
    expect(strings.intern('node-1')).toBe('node-1');
    // A third distinct value clears the table: the next copy of "tenant" is held anew.
    expect(strings.intern('node-2')).toBe('node-2');
    expect(strings.intern(again)).toBe(again);
  });
});
