import { describe, it, expect } from 'vitest';
import { parseLabelSelector } from './label-selector.js';

describe('parseLabelSelector', () => {
  it('reads equality pairs, = or ==', () => {
    expect(parseLabelSelector('team=ml, tier==batch,example.com/x=')).toEqual({ team: 'ml', tier: 'batch', 'example.com/x': '' });
  });
  it('rejects set-based and malformed selectors', () => {
    expect(() => parseLabelSelector('team!=ml')).toThrow(/only equality/);
    expect(() => parseLabelSelector('team')).toThrow(/not key=value/);
    expect(() => parseLabelSelector('a=b=c')).toThrow(/not key=value/);
  });
});
