/** Nearest-rank percentiles (p in 0..100) of unsorted values, sorting once; NaN for none. */
export function percentiles(values: readonly number[], ps: readonly number[]): number[] {
  const sorted = [...values].sort((a, b) => a - b);
  return ps.map((p) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]));
}

export function percentile(values: readonly number[], p: number): number {
  return percentiles(values, [p])[0];
}
