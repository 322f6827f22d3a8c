import type { Engine } from '../../engine/engine';
import { describeAnomalyExit } from '../../engine/tasks';
import type { AnomalyCalibration } from '../../model/manifest';

/** An anomaly package's operating point, as the page's header says it (its early-exit threshold is often the factory's -1e9 "never"). */
export interface AnomalyOperatingPoint {
  /** The share of good frames the threshold in force flags, on the package's calibration; null outside its quantiles. */
  falseAlarmRate: number | null;
  /** The early exit in words, never the sentinel as a number. */
  earlyExit: string;
}

/** Nothing for packages of other tasks: their early-exit threshold is the one to show. */
export function anomalyOperatingPoint(engine: Engine): AnomalyOperatingPoint | Record<string, never> {
  const calibration = engine.manifest.calibration.anomaly;
  const threshold = engine.task.currentThreshold;
  if (!calibration || threshold === undefined) return {};
  return { falseAlarmRate: falseAlarmRateOf(calibration, threshold), earlyExit: describeAnomalyExit(engine.getSettings().threshold) };
}

/**
 * The rate a threshold flags: the package's own rate for its calibrated threshold, else the inverse of
 * thresholdForFalseAlarmRate (linear between the quantiles), so a rate set by config or command reads back.
 */
export function falseAlarmRateOf(calibration: AnomalyCalibration, threshold: number): number | null {
  if (threshold === calibration.threshold) return calibration.falseAlarmRate;
  const qs = calibration.quantiles;
  const upper = qs.findIndex((p, i) => i > 0 && p.score >= threshold && qs[i - 1].score <= threshold && p.score > qs[i - 1].score);
  if (upper < 0) return null;
  const [a, b] = [qs[upper - 1], qs[upper]];
  return 1 - (a.q + ((b.q - a.q) * (threshold - a.score)) / (b.score - a.score));
}
