import { InputError } from '../../domain/errors.js';
import type { GpuDevice } from '../../domain/node.js';

/** GPUs of a simulated node: `count` identical devices named "0".."count-1". */
export interface SimulatedGpus {
  count: number;
  model: string;
  /** @default undefined (unknown) */
  memoryMiB?: number | undefined;
}

/**
 * The size of one simulated node. Only numbers: a simulated node has no real CPU or
 * memory behind it, and nothing enforces these limits on the fake containers.
 */
export interface NodeShape {
  cpuMillicores: number;
  memoryMiB: number;
  /** @default none */
  gpus?: SimulatedGpus | undefined;
  /** Labels a test or benchmark wants the node registered with (zone, pool, ...). @default {} */
  labels?: Record<string, string> | undefined;
}

/** 8 CPUs, 32 GiB, no GPU: a common cloud VM size. */
export const DEFAULT_NODE_SHAPE: NodeShape = Object.freeze({ cpuMillicores: 8_000, memoryMiB: 32_768 });

const positiveInteger = (value: unknown): boolean => typeof value === 'number' && Number.isInteger(value) && value > 0;

/** Throws InputError naming the bad field, so a mistyped shape fails at cluster construction. */
export function validateNodeShape(shape: NodeShape, where: string): NodeShape {
  if (!positiveInteger(shape.cpuMillicores)) {
    throw new InputError(`${where}.cpuMillicores must be a positive integer (millicores), got ${String(shape.cpuMillicores)}`);
  }
  if (!positiveInteger(shape.memoryMiB)) {
    throw new InputError(`${where}.memoryMiB must be a positive integer (MiB), got ${String(shape.memoryMiB)}`);
  }
  if (shape.gpus !== undefined) {
    if (!Number.isInteger(shape.gpus.count) || shape.gpus.count < 0) {
      throw new InputError(`${where}.gpus.count must be a non-negative integer, got ${String(shape.gpus.count)}`);
    }
    if (typeof shape.gpus.model !== 'string' || shape.gpus.model === '') throw new InputError(`${where}.gpus.model must be a non-empty string`);
  }
  return shape;
}

/** The GPU devices of a shape, in the form the domain's Node capacity uses. */
export function gpuDevicesOf(shape: NodeShape): GpuDevice[] {
  const gpus = shape.gpus;
  if (gpus === undefined) return [];
  return Array.from({ length: gpus.count }, (_, i) => ({ id: String(i), model: gpus.model, memoryMiB: gpus.memoryMiB }));
}
