import { describe, expect, it } from 'vitest';
import { discoverLocalGpus, parseNvidiaSmiGpus } from './gpu-discovery.js';

describe('parseNvidiaSmiGpus', () => {
  it('reads index, model and memory from nvidia-smi csv without header or units', () => {
    const out = ['0, GPU-8a1f2b3c-1111-2222-3333-444455556666, NVIDIA A100-SXM4-40GB, 40960', '1, GPU-9b, Tesla T4, 15360', ''].join('\n');
    expect(parseNvidiaSmiGpus(out)).toEqual([
      { id: '0', model: 'NVIDIA A100-SXM4-40GB', memoryMiB: 40960 },
      { id: '1', model: 'Tesla T4', memoryMiB: 15360 },
    ]);
  });

  it('keeps commas inside the model name and skips lines that are not devices', () => {
    expect(parseNvidiaSmiGpus('No devices were found\n2, GPU-x, Model, with comma, [N/A]\n')).toEqual([{ id: '2', model: 'Model, with comma' }]);
  });
});

describe('discoverLocalGpus', () => {
  it('finds nothing when the tool does not exist', async () => {
    expect(await discoverLocalGpus(undefined, '/nonexistent/nvidia-smi')).toEqual([]);
  });
});
