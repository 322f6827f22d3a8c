import { percentiles } from '../percentile';

/** Frames/s counts the decisions of this span: recent enough that a stalled line shows 0 within it. */
export const RATE_WINDOW_MS = 10_000;

/** The last `size` decision latencies and their arrival times: percentiles and frames/s for the live view. */
export class LatencyWindow {
  private readonly values: number[] = [];
  private readonly times: number[] = [];

  constructor(private readonly size: number) {}

  add(latencyUs: number, at = Date.now()): void {
    this.values.push(latencyUs);
    this.times.push(at);
    if (this.values.length > this.size) {
      this.values.shift();
      this.times.shift();
    }
  }

  percentiles(): { p50: number; p99: number } | null {
    if (this.values.length === 0) return null;
    const [p50, p99] = percentiles(this.values, [50, 99]);
    return { p50, p99 };
  }

  /**
   * Decisions per second over the last RATE_WINDOW_MS (or since the first kept decision, when that is later, but at
   * least a second): 0 once no frame came for that long. Measured over the whole kept window, a stalled line would
   * decay only as 1/t and look alive for minutes.
   */
  rate(now = Date.now()): number {
    const from = now - RATE_WINDOW_MS;
    let recent = 0;
    for (let i = this.times.length - 1; i >= 0 && this.times[i] > from; i--) recent++;
    if (recent === 0) return 0;
    const span = Math.min(Math.max(now - this.times[0], 1000), RATE_WINDOW_MS);
    return recent / (span / 1000);
  }
}
