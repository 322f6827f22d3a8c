import { percentiles } from '../percentile';

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

  /** Decisions per second over the window, measured up to now (0 once frames stop coming). */
  rate(now = Date.now()): number {
    if (this.times.length < 2) return 0;
    const span = (now - this.times[0]) / 1000;
    return span > 0 ? this.times.length / span : 0;
  }
}
