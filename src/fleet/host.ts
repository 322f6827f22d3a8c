import type { RoutingStats } from '../audit/health';
import type { Engine } from '../engine/engine';

/**
 * What the update agent needs from whoever runs the engine (the edge node): the running engine, and a swap
 * that takes effect between two frames. Frames already handed to the old engine finish on it; `swap` resolves
 * once they have, and the agent then disposes the previous engine.
 */
export interface EngineHost {
  readonly engine: Engine;
  swap(next: Engine): Promise<{ previous: Engine }>;
}

/** What the health watch reads. Frame and error counts are running totals; the agent looks at their growth. */
export interface HealthSample {
  frames: number;
  errors: number;
  /** Anomaly packages: frames flagged anomalous (null when no frame had an anomaly verdict). */
  anomalous?: number | null;
  /** p99 of recent per-frame latency, in microseconds, or null before any frame. */
  latencyP99Us: number | null;
  /** Routing statistics of the running model's recent decisions (audit log window), when available. */
  routing?: RoutingStats | null;
}

export interface HealthProbe {
  sample(): HealthSample | Promise<HealthSample>;
}
