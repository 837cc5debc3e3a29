import { describe, expect, it } from 'vitest';
import { RateCard, RateCardError } from './rate-card.js';

describe('rate card', () => {
  it('parses decimal prices exactly into micro-units, with per-tenant overrides', () => {
    const card = RateCard.parse('{"currency":"EUR","cpuCoreHour":"0.04","memoryGiBHour":0.005,"gpuHour":"1.2","tenants":{"ml":{"gpuHour":"0.9"}}}', 'test');
    expect(card.ratesFor('x')).toEqual({ currency: 'EUR', cpuCoreHourMicros: 40_000n, memoryGiBHourMicros: 5_000n, gpuHourMicros: 1_200_000n });
    expect(card.ratesFor('ml').gpuHourMicros).toBe(900_000n);
    expect(card.ratesFor('ml').cpuCoreHourMicros).toBe(40_000n);
  });

  it('refuses more than 6 decimals, negative prices and unknown fields, naming the source', () => {
    expect(() => RateCard.parse('{"cpuCoreHour":"0.0000001"}', 'AGENT_PLATFORM_RATE_CARD')).toThrow(/AGENT_PLATFORM_RATE_CARD: cpuCoreHour/);
    expect(() => RateCard.parse('{"cpuCoreHour":-1}', 'X')).toThrow(RateCardError);
    expect(() => RateCard.parse('{"cpu":"1"}', 'X')).toThrow(/unrecognized|cpu/i);
    expect(() => RateCard.parse('nope', 'X')).toThrow(/not valid JSON/);
  });

  it('without configuration usage is free', () => {
    expect(RateCard.load(undefined, undefined).ratesFor('t').cpuCoreHourMicros).toBe(0n);
  });
});
