export interface BackoffOptions {
  /** First wait after a failure (default 500 ms). */
  initialMs?: number;
  /** Longest wait (default 30 s). */
  maxMs?: number;
  /** Growth per consecutive failure (default 2). */
  factor?: number;
}

/** Exponential backoff between retries of an unreachable camera; `reset` after a success. */
export class Backoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;

  constructor({ initialMs = 500, maxMs = 30_000, factor = 2 }: BackoffOptions = {}) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
  }

  next(): number {
    return Math.min(this.maxMs, this.initialMs * this.factor ** this.failures++);
  }

  reset(): void {
    this.failures = 0;
  }
}

/** Waits `ms`, or less when `signal` aborts (never rejects: the caller checks `signal.aborted`). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
