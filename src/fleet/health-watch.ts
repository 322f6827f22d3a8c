import { setTimeout as sleep } from 'node:timers/promises';
import type { HealthProbe, HealthSample } from './host';

export interface HealthWatchOptions {
  /** How long a new model is watched after its swap. */
  windowMs: number;
  /** How often the probe is read. */
  intervalMs: number;
  /** Failed frames over frames since the swap. */
  maxErrorRate: number;
  /** Judged only once this many frames ran since the swap (one slow first frame is no regression). */
  minFrames: number;
  maxLatencyP99Us?: number;
  /** Total variation between the expert shares and the new manifest's calibration.expertShare. */
  maxDrift?: number;
  /** Drift is judged only once this many decisions ran an expert. */
  minRouted: number;
  /** Anomaly packages: the share of frames flagged since the swap (the node's own anomaly-rate alarm is at 0.1). */
  maxAnomalyRate?: number;
  /** ... judged only once this many frames ran since the swap (a few real defects in a row are no regression). */
  minAnomalyFrames: number;
}

export const DEFAULT_HEALTH_WATCH: HealthWatchOptions = {
  windowMs: 60_000,
  intervalMs: 1_000,
  maxErrorRate: 0.01,
  minFrames: 20,
  maxDrift: 0.3,
  minRouted: 50,
  maxAnomalyRate: 0.1,
  minAnomalyFrames: 100,
};

export type HealthVerdict = { ok: true; sample: HealthSample } | { ok: false; reason: string; sample: HealthSample };

/** Why `now` (compared with `start`, read at the swap) is a regression, or null when it is not. */
export function judgeHealth(start: HealthSample, now: HealthSample, limits: HealthWatchOptions): string | null {
  const frames = now.frames - start.frames;
  const errors = now.errors - start.errors;
  if (frames >= limits.minFrames && frames > 0) {
    if (errors / frames > limits.maxErrorRate) {
      return `error rate ${(errors / frames).toFixed(3)} (${errors} of ${frames} frames) above ${limits.maxErrorRate}`;
    }
    if (limits.maxLatencyP99Us !== undefined && now.latencyP99Us !== null && now.latencyP99Us > limits.maxLatencyP99Us) {
      return `latency p99 ${Math.round(now.latencyP99Us)} us above ${limits.maxLatencyP99Us} us`;
    }
  }
  const flagged = now.anomalous == null ? null : now.anomalous - (start.anomalous ?? 0);
  if (limits.maxAnomalyRate !== undefined && flagged !== null && frames >= limits.minAnomalyFrames && frames > 0 && flagged / frames > limits.maxAnomalyRate) {
    return `anomaly rate ${(flagged / frames).toFixed(3)} (${flagged} of ${frames} frames flagged) above ${limits.maxAnomalyRate}`;
  }
  const routing = now.routing;
  if (limits.maxDrift !== undefined && routing && routing.routed >= limits.minRouted && routing.drift !== null && routing.drift > limits.maxDrift) {
    return `routing drift ${routing.drift.toFixed(3)} from the manifest's expertShare above ${limits.maxDrift} (shares ${routing.shares.map((s) => s.toFixed(2)).join(', ')})`;
  }
  return null;
}

/** Reads the probe every `intervalMs` for `windowMs`; the first regression ends the watch. */
export async function watchHealth(probe: HealthProbe, start: HealthSample, limits: HealthWatchOptions): Promise<HealthVerdict> {
  const end = Date.now() + limits.windowMs;
  for (;;) {
    await sleep(Math.max(0, Math.min(limits.intervalMs, end - Date.now())));
    const sample = await probe.sample();
    const reason = judgeHealth(start, sample, limits);
    if (reason) return { ok: false, reason, sample };
    if (Date.now() >= end) return { ok: true, sample };
  }
}
