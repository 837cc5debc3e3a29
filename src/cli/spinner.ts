import type { OutputStream } from './io.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * A one-line progress indicator on stderr. It draws only when the stream is a TTY, so
 * pipes and CI logs never receive carriage returns; stdout stays clean for scripts.
 */
export class Spinner {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private text = '';
  readonly enabled: boolean;

  constructor(
    private readonly stream: OutputStream,
    private readonly intervalMs = 100,
  ) {
    this.enabled = stream.isTTY === true;
  }

  start(text: string): void {
    this.text = text;
    if (!this.enabled || this.timer) return;
    this.draw();
    this.timer = setInterval(() => this.draw(), this.intervalMs);
    this.timer.unref();
  }

  update(text: string): void {
    this.text = text;
  }

  /** Clears the line; safe to call more than once. */
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stream.write('\r\x1b[2K');
  }

  private draw(): void {
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame]} ${this.text}`);
  }
}
