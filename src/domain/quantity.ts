import { InputError } from './errors.js';

/**
 * Kubernetes resource quantities, parsed at the edge into integers in base units:
 * CPU into millicores, memory into MiB. Same grammar as k8s.io/apimachinery's
 * resource.Quantity for the suffixes people actually use.
 */
const QUANTITY = /^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([a-zA-Z]*)$/;

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

function split(field: string, value: string | number): [number, string] {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new InputError(`${field}: ${value} must be a non-negative number`, { field });
    return [value, ''];
  }
  const m = QUANTITY.exec(value.trim());
  if (!m) throw new InputError(`${field}: "${value}" is not a quantity; use e.g. "500m", "0.5", "128Mi" or "1Gi"`, { field, value });
  return [Number(m[1]), m[2] ?? ''];
}

/** "100m" -> 100, "0.5" -> 500, "2" -> 2000, 1 -> 1000. Rounds up to a whole millicore. */
export function parseCpuMillicores(value: string | number, field = 'cpu'): number {
  const [n, suffix] = split(field, value);
  let millicores: number;
  if (suffix === 'm') millicores = n;
  else if (suffix === '') millicores = n * 1000;
  else throw new InputError(`${field}: unknown CPU suffix "${suffix}" in "${value}"; use millicores ("250m") or cores ("0.25")`, { field, value });
  return Math.ceil(millicores - 1e-9);
}

/** "128Mi" -> 128, "1Gi" -> 1024, "500M" -> 477 (rounded up), 134217728 (bytes) -> 128. */
export function parseMemoryMiB(value: string | number, field = 'memory'): number {
  const [n, suffix] = split(field, value);
  let bytes: number;
  if (suffix in BINARY) bytes = n * BINARY[suffix]!;
  else if (suffix in DECIMAL) bytes = n * DECIMAL[suffix]!;
  else throw new InputError(`${field}: unknown memory suffix "${suffix}" in "${value}"; use Mi, Gi, M or G (e.g. "128Mi")`, { field, value });
  return Math.ceil(bytes / 2 ** 20 - 1e-9);
}

export function formatCpu(millicores: number): string {
  return millicores % 1000 === 0 ? String(millicores / 1000) : `${millicores}m`;
}

export function formatMemory(mib: number): string {
  return mib % 1024 === 0 ? `${mib / 1024}Gi` : `${mib}Mi`;
}
