import type { SampleBlock } from './block';
import type { SignalSpec } from './spec';

/** A window of samples ready for the trunk: channel-major [channels * window]. */
export interface SignalWindow {
  data: Float32Array;
  /** Epoch ms of the window's first sample (when the stream has timestamps). */
  start?: number;
  /** Index of the window's first sample since the last reset. */
  offset: number;
  tags: SampleBlock['tags'];
}

/**
 * Cuts windows of `spec.window` samples every `spec.hop` samples from consecutive blocks of one stream, across
 * block boundaries. A block whose timestamp does not follow on from the previous one (a gap, or time going back)
 * drops the samples held and starts again: windows never span missing samples. Resets are counted.
 */
export class Windower {
  private held: Float32Array[];
  private heldStart = 0; // sample index (since the reset) of held[c][0]
  private nextWindowAt = 0;
  private expectedTs?: number;
  private lastTags: SampleBlock['tags'] = {};
  private firstTs?: number;
  resets = 0;

  constructor(
    private readonly spec: SignalSpec,
    /** Allowed timestamp mismatch, in sample periods, before a block counts as a gap. */
    private readonly toleranceSamples = 2,
  ) {
    this.held = this.empty();
  }

  push(block: SampleBlock): SignalWindow[] {
    const length = block.samples[0].length;
    if (block.timestamp !== undefined) {
      const period = 1000 / this.spec.sampleRate;
      if (this.expectedTs !== undefined && Math.abs(block.timestamp - this.expectedTs) > this.toleranceSamples * period) this.reset();
      if (this.firstTs === undefined) this.firstTs = block.timestamp - this.heldStart * period - this.heldLength() * period;
      this.expectedTs = block.timestamp + length * period;
    }
    this.lastTags = block.tags;
    this.held = this.held.map((h, c) => concat(h, block.samples[c]));
    const windows: SignalWindow[] = [];
    const { window, hop, channels } = this.spec;
    while (this.nextWindowAt + window <= this.heldStart + this.heldLength()) {
      const from = this.nextWindowAt - this.heldStart;
      const data = new Float32Array(channels * window);
      for (let c = 0; c < channels; c++) data.set(this.held[c].subarray(from, from + window), c * window);
      windows.push({
        data,
        offset: this.nextWindowAt,
        ...(this.firstTs !== undefined ? { start: this.firstTs + (this.nextWindowAt * 1000) / this.spec.sampleRate } : {}),
        tags: this.lastTags,
      });
      this.nextWindowAt += hop;
    }
    // Keep only what a later window can still use.
    const keepFrom = Math.min(this.nextWindowAt, this.heldStart + this.heldLength()) - this.heldStart;
    if (keepFrom > 0) {
      this.held = this.held.map((h) => h.slice(keepFrom));
      this.heldStart += keepFrom;
    }
    return windows;
  }

  /** Samples received and not yet part of a finished window (pending). */
  pendingSamples(): number {
    return this.heldLength();
  }

  reset(): void {
    this.resets++;
    this.held = this.empty();
    this.heldStart = 0;
    this.nextWindowAt = 0;
    this.expectedTs = undefined;
    this.firstTs = undefined;
  }

  private heldLength(): number {
    return this.held[0].length;
  }

  private empty(): Float32Array[] {
    return Array.from({ length: this.spec.channels }, () => new Float32Array(0));
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length === 0) return b;
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
