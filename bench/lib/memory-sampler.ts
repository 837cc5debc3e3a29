/** Peaks of this process's memory over a sampled window, in MiB. */
export interface MemoryPeaks {
  peakRssMiB: number;
  peakHeapUsedMiB: number;
  samples: number;
}

const MiB = 1024 * 1024;

/**
 * Samples process.memoryUsage() every `intervalMs` (default 100 ms) until stop().
 * The timer is unref'd so a forgotten sampler never keeps a process alive; stop()
 * takes one last sample so a short window still has one.
 */
export class MemorySampler {
  private peakRss = 0;
  private peakHeap = 0;
  private samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    const m = process.memoryUsage();
    this.peakRss = Math.max(this.peakRss, m.rss);
    this.peakHeap = Math.max(this.peakHeap, m.heapUsed);
    this.samples++;
  }

  stop(): MemoryPeaks {
    clearInterval(this.timer);
    this.sample();
    return { peakRssMiB: this.peakRss / MiB, peakHeapUsedMiB: this.peakHeap / MiB, samples: this.samples };
  }
}
