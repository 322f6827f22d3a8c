import { SgmoeError } from '../../errors';
import type { AnomalyCalibration, Manifest } from '../../model/manifest';
import type { BaseVerdict, BranchOutputs, Task, TaskResult } from './task';

interface AnomalyVerdict extends BaseVerdict {
  map: Float32Array;
}

/** The anomaly fields of a decision, carried into the MQTT result, the audit row and `sgmoe infer`'s line. */
export type AnomalyFields = {
  anomaly: {
    score: number;
    threshold: number;
    verdict: 'good' | 'anomalous';
    /** The coarse score map (row-major, `grid` = [rows, cols]), on the score's scale. */
    grid: [number, number];
    map: number[];
  };
};

/** The factory writes an early-exit threshold of -1e9 (its rule.NEVER) when the expert always runs. */
const NEVER_EXITS = -1e8;

/** An anomaly package's early exit in words, for people reading `model inspect` and the run summary. */
export function describeAnomalyExit(threshold: number): string {
  return threshold <= NEVER_EXITS ? 'no early exit (the expert always runs)' : `early exit when the base score < ${threshold}`;
}

/**
 * The score at quantile 1 - rate of the final score on held-out good images, linear between the manifest's
 * quantiles (as the factory's `rule.threshold_for`); rates outside the stored range are refused.
 */
export function thresholdForFalseAlarmRate(calibration: AnomalyCalibration, rate: number): number {
  const q = 1 - rate;
  const qs = calibration.quantiles;
  const [first, last] = [qs[0], qs[qs.length - 1]];
  if (!(q >= first.q && q <= last.q)) {
    throw new SgmoeError(
      'E_CONFIG_INVALID',
      `false-alarm rate: expected between ${+(1 - last.q).toFixed(6)} and ${+(1 - first.q).toFixed(6)} (the calibrated quantiles), found ${rate}`,
    );
  }
  const upper = qs.findIndex((p) => p.q >= q);
  if (upper === 0) return first.score;
  const [a, b] = [qs[upper - 1], qs[upper]];
  return a.score + ((b.score - a.score) * (q - a.q)) / (b.q - a.q);
}

/**
 * Anomaly detection on good parts only (docs/DESIGN.md, "Seams"): base and experts give a score on one
 * scale and a coarse map. A base score below the early-exit threshold is clearly good; else the top-1 expert's score
 * is mixed with the base's; the frame is anomalous at or above the calibrated threshold.
 */
export class AnomalyTask implements Task<AnomalyVerdict> {
  readonly name = 'anomaly';
  readonly earlyExitRange = [-Number.MAX_VALUE, Number.MAX_VALUE] as const;
  readonly branchOutputs;
  private readonly baseWeight: number;
  private readonly grid: [number, number];
  private threshold: number;
  private falseAlarmRate: number;

  constructor(private readonly manifest: Manifest) {
    const calibration = manifest.calibration.anomaly;
    if (!calibration) throw new SgmoeError('E_MANIFEST_INVALID', 'an anomaly package needs calibration.anomaly');
    this.grid = calibration.grid;
    this.baseWeight = manifest.routing.ensemble.baseWeight;
    this.threshold = calibration.threshold;
    this.falseAlarmRate = calibration.falseAlarmRate;
    this.branchOutputs = [
      { name: 'score', dims: [1] },
      { name: 'map', dims: calibration.grid },
    ] as const;
  }

  /** Moves the operating point: the threshold that flags this share of good frames (calibration quantiles). */
  setFalseAlarmRate(rate: number): number {
    this.threshold = thresholdForFalseAlarmRate(this.manifest.calibration.anomaly!, rate);
    this.falseAlarmRate = rate;
    return this.threshold;
  }

  get currentThreshold(): number {
    return this.threshold;
  }

  get currentFalseAlarmRate(): number {
    return this.falseAlarmRate;
  }

  base(outputs: BranchOutputs, threshold: number): AnomalyVerdict {
    const score = outputs.score[0];
    // Base-only mode passes -Infinity: the base alone decides every frame.
    return { confidence: score, earlyExit: threshold === -Infinity || score < threshold, map: outputs.map };
  }

  finish(verdict: AnomalyVerdict, experts: BranchOutputs[], weights: number[]): TaskResult {
    let score = verdict.confidence;
    let map: ArrayLike<number> = verdict.map;
    if (experts.length > 0) {
      const w = this.baseWeight;
      score = w * verdict.confidence;
      const mixed = Float32Array.from(verdict.map, (v) => w * v);
      experts.forEach((e, i) => {
        score += (1 - w) * weights[i] * e.score[0];
        for (let j = 0; j < mixed.length; j++) mixed[j] += (1 - w) * weights[i] * e.map[j];
      });
      map = mixed;
    }
    // Not `score >= threshold`: a score that is no number (a broken model output) is flagged for a look, never passed as good.
    const anomalous = !(score < this.threshold);
    const fields: AnomalyFields = {
      anomaly: {
        score,
        threshold: this.threshold,
        verdict: anomalous ? 'anomalous' : 'good',
        grid: this.grid,
        map: Array.from(map, (v) => Math.round(v * 1000) / 1000),
      },
    };
    return { labelIndex: anomalous ? 1 : 0, label: this.manifest.labels[anomalous ? 1 : 0], score, probabilities: [], extra: fields };
  }
}
