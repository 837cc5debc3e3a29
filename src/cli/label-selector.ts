import { InputError } from '../domain/errors.js';

/** Parses `-l team=a,tier=b` into `{team: 'a', tier: 'b'}`; only equality is supported by the API. */
export function parseLabelSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const m = /^\s*([^=!\s]+)\s*==?\s*([^=\s]*)\s*$/.exec(pair);
    if (!m) throw new InputError(`-l ${text}: "${pair}" is not key=value (only equality selectors are supported)`, { value: text }, 'INVALID_ARGUMENT');
    out[m[1]!] = m[2]!;
  }
  return out;
}
