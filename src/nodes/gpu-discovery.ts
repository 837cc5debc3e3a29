import { execFile } from 'node:child_process';
import type { GpuDevice } from '../domain/node.js';

/** The query the platform runs; keep in step with parseNvidiaSmiGpus. */
export const NVIDIA_SMI_ARGS = ['--query-gpu=index,uuid,name,memory.total', '--format=csv,noheader,nounits'] as const;

/**
 * Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`
 * output ("0, GPU-8a1f..., NVIDIA A100-SXM4-40GB, 40960" per line). The device id is the
 * index, the form Docker's DeviceRequests and NVIDIA_VISIBLE_DEVICES accept and the one
 * simulated nodes use; lines that do not have four fields are skipped.
 */
export function parseNvidiaSmiGpus(output: string): GpuDevice[] {
  const gpus: GpuDevice[] = [];
  for (const line of output.split('\n')) {
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < 4 || !/^\d+$/.test(fields[0]!)) continue;
    // A model name may itself contain commas: everything between uuid and the last field.
    const memory = Number(fields[fields.length - 1]);
    const model = fields.slice(2, -1).join(', ');
    gpus.push({ id: fields[0]!, model, ...(Number.isFinite(memory) && memory > 0 ? { memoryMiB: Math.round(memory) } : {}) });
  }
  return gpus;
}

/**
 * GPUs of this host, from nvidia-smi; none when the tool is missing or fails (a host
 * without NVIDIA drivers is the normal case, not an error).
 */
export function discoverLocalGpus(signal?: AbortSignal, command = 'nvidia-smi'): Promise<GpuDevice[]> {
  return new Promise((resolve) => {
    execFile(command, [...NVIDIA_SMI_ARGS], { timeout: 10_000, signal }, (err, stdout) => {
      resolve(err ? [] : parseNvidiaSmiGpus(stdout));
    });
  });
}
