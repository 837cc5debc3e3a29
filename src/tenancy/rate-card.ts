import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Rates } from './usage-ledger.js';
import { ConfigError } from '../config.js';

/**
 * The rate card: prices per core-hour, GiB-hour (memory requests) and GPU-hour, with
 * per-tenant overrides. Prices are decimals with at most 6 places, kept as integer
 * micro-units so that billing is exact.
 *
 * AGENT_PLATFORM_RATE_CARD (JSON) or AGENT_PLATFORM_RATE_CARD_FILE (a JSON file), e.g.
 * {"currency":"USD","cpuCoreHour":"0.04","memoryGiBHour":"0.005","gpuHour":"1.20",
 *  "tenants":{"research":{"gpuHour":"0.90"}}}
 */
const Price = z
  .union([z.string(), z.number().nonnegative()])
  .transform((v, ctx) => {
    const text = typeof v === 'number' ? String(v) : v.trim();
    const m = /^([0-9]+)(?:\.([0-9]{1,6}))?$/.exec(text);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a price; use a non-negative decimal with at most 6 places, e.g. "0.04"` });
      return z.NEVER;
    }
    return BigInt(m[1]!) * 1_000_000n + BigInt((m[2] ?? '').padEnd(6, '0'));
  });

const Prices = z.strictObject({ cpuCoreHour: Price.optional(), memoryGiBHour: Price.optional(), gpuHour: Price.optional(), currency: z.string().regex(/^[A-Z]{3}$/).optional() });
const RateCardInput = Prices.extend({ tenants: z.record(z.string(), Prices).optional() });

/** A bad rate card is a configuration mistake: a ConfigError, so the start fails cleanly. */
export class RateCardError extends ConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'RateCardError';
  }
}

export class RateCard {
  constructor(
    private readonly base: Rates,
    private readonly overrides: ReadonlyMap<string, Partial<Rates>> = new Map(),
  ) {}

  /** The tenant's rates: its overrides on top of the base card. */
  ratesFor(tenantId: string): Rates {
    return { ...this.base, ...this.overrides.get(tenantId) };
  }

  /** Nothing is charged (the default when no rate card is configured). */
  static free(): RateCard {
    return new RateCard({ currency: 'USD', cpuCoreHourMicros: 0n, memoryGiBHourMicros: 0n, gpuHourMicros: 0n });
  }

  /** Parses the JSON text; `source` names the variable or file in errors. */
  static parse(text: string, source: string): RateCard {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new RateCardError(`${source}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    const r = RateCardInput.safeParse(raw);
    if (!r.success) throw new RateCardError(`${source}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    const toRates = (p: z.output<typeof Prices>): Partial<Rates> => ({
      ...(p.currency !== undefined ? { currency: p.currency } : {}),
      ...(p.cpuCoreHour !== undefined ? { cpuCoreHourMicros: p.cpuCoreHour } : {}),
      ...(p.memoryGiBHour !== undefined ? { memoryGiBHourMicros: p.memoryGiBHour } : {}),
      ...(p.gpuHour !== undefined ? { gpuHourMicros: p.gpuHour } : {}),
    });
    const base: Rates = { ...RateCard.free().ratesFor(''), ...toRates(r.data) };
    return new RateCard(base, new Map(Object.entries(r.data.tenants ?? {}).map(([t, p]) => [t, toRates(p)])));
  }

  /** From the config: inline JSON wins over a file; neither gives the free card. */
  static load(json: string | undefined, file: string | undefined): RateCard {
    if (json) return RateCard.parse(json, 'AGENT_PLATFORM_RATE_CARD');
    if (file) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new RateCardError(`AGENT_PLATFORM_RATE_CARD_FILE: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
      }
      return RateCard.parse(text, `AGENT_PLATFORM_RATE_CARD_FILE (${file})`);
    }
    return RateCard.free();
  }
}
