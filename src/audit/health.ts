import { errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import type { AnomalyFields } from '../engine/tasks';
import type { AuditRecord } from './record';

/** One calibration point of an anomaly package: `score` is the q-quantile of the final score on held-out good images. */
export interface ScoreQuantile {
  q: number;
  score: number;
}

/** Anomaly packages: how the scores compare with the good-image calibration, over the same decisions. */
export interface ScoreStats {
  /** Decisions that carried an anomaly score. */
  scored: number;
  /** Share of them at or above the threshold (verdict anomalous). */
  anomalyRate: number | null;
  /**
   * Largest gap, over the calibration quantiles, between the share of scores below a quantile's score and its q
   * (a Kolmogorov-Smirnov distance at those points): 0 when the scores sit as on good images, up to 1.
   */
  drift: number | null;
}

/** Routing statistics over a set of decisions. Shares are over the decisions that ran an expert. */
export interface RoutingStats {
  /** Decisions (status ok) counted. */
  decisions: number;
  /** Of those, decisions that ran an expert (not early exits). */
  routed: number;
  /** Share of routed decisions per expert (all zero while nothing was routed). */
  shares: number[];
  /** Entropy of the shares divided by log(experts): 1 = perfectly even, 0 = one expert takes all. */
  entropy: number | null;
  earlyExitRate: number | null;
  /** Mean of the gate's top probability, over decisions where the gate ran. */
  meanGateConfidence: number | null;
  /** Total variation distance between `shares` and the package's calibration.expertShare, in [0,1]. */
  drift: number | null;
  /** Anomaly packages only (calibration quantiles given). */
  scores?: ScoreStats;
}

export type AlarmKind = 'router_collapse' | 'expert_starved' | 'drift' | 'early_exit_rate' | 'anomaly_rate' | 'score_drift';

export interface HealthThresholds {
  /** router_collapse when one expert's share rises above this. */
  collapseShare: number;
  /** expert_starved when one expert's share falls below this. */
  starvedShare: number;
  /** drift when the total variation to the calibration shares rises above this. */
  drift: number;
  /** early_exit_rate when the early-exit rate leaves [min, max]. */
  earlyExit: { min: number; max: number };
  /** anomaly_rate when the share of frames at or above the threshold rises above this. */
  anomalyRate: number;
  /** score_drift when the scores' distance to the calibration quantiles rises above this. */
  scoreDrift: number;
  /** An alarm clears only once its value is back inside its bound by this margin (no flapping). */
  hysteresis: number;
  /** Alarms are judged only once the window holds this many decisions (routed ones, for share alarms). */
  minSamples: number;
}

/** Decisions in the sliding window that routing health judges, unless configured. */
export const DEFAULT_WINDOW_SIZE = 1000;

export const DEFAULT_THRESHOLDS: HealthThresholds = {
  collapseShare: 0.8,
  starvedShare: 0.02,
  drift: 0.3,
  earlyExit: { min: 0, max: 1 },
  anomalyRate: 0.1,
  scoreDrift: 0.2,
  hysteresis: 0.05,
  minSamples: 200,
};

export interface HealthAlarm {
  kind: AlarmKind;
  state: 'raised' | 'cleared';
  /** The figure judged (a share, a distance or a rate) and the bound it crossed. */
  value: number;
  bound: number;
  /** The experts concerned, for share alarms. */
  experts: number[];
  message: string;
  window: RoutingStats;
}

export interface RoutingHealthOptions {
  experts: number;
  /** calibration.expertShare of the package, to measure drift against; omit to skip drift. */
  expectedShare?: readonly number[];
  /** calibration.anomaly.quantiles of an anomaly package, to watch its scores against; omit for other tasks. */
  scoreQuantiles?: readonly ScoreQuantile[];
  /** Decisions in the sliding window. */
  windowSize?: number;
  thresholds?: Partial<HealthThresholds>;
  logger?: Logger;
}

/** Running sums over a set of decisions; the window adds and removes, all-time only adds. */
class Tally {
  decisions = 0;
  earlyExits = 0;
  gated = 0;
  gateConfidenceSum = 0;
  readonly perExpert: number[];
  scored = 0;
  anomalous = 0;
  /** Per calibration quantile, scores strictly below its score. */
  readonly below: number[];

  constructor(
    experts: number,
    private readonly quantiles: readonly ScoreQuantile[] | undefined,
  ) {
    this.perExpert = new Array<number>(experts).fill(0);
    this.below = new Array<number>(quantiles?.length ?? 0).fill(0);
  }

  /** `score` NaN: the decision carried no anomaly score. */
  add(expert: number, earlyExit: boolean, gateConfidence: number, score: number, anomalous: boolean, sign: 1 | -1): void {
    if (!Number.isNaN(score) && this.quantiles) {
      this.scored += sign;
      if (anomalous) this.anomalous += sign;
      for (let i = 0; i < this.below.length; i++) if (score < this.quantiles[i].score) this.below[i] += sign;
    }
    this.decisions += sign;
    if (earlyExit) this.earlyExits += sign;
    if (expert >= 0 && expert < this.perExpert.length) this.perExpert[expert] += sign;
    if (!Number.isNaN(gateConfidence)) {
      this.gated += sign;
      this.gateConfidenceSum += sign * gateConfidence;
    }
  }

  stats(expected: readonly number[] | undefined): RoutingStats {
    const routed = this.perExpert.reduce((a, b) => a + b, 0);
    const shares = this.perExpert.map((n) => (routed > 0 ? n / routed : 0));
    const k = shares.length;
    return {
      decisions: this.decisions,
      routed,
      shares,
      entropy: routed > 0 && k > 1 ? shares.reduce((h, p) => (p > 0 ? h - p * Math.log(p) : h), 0) / Math.log(k) : null,
      earlyExitRate: this.decisions > 0 ? this.earlyExits / this.decisions : null,
      meanGateConfidence: this.gated > 0 ? this.gateConfidenceSum / this.gated : null,
      drift: routed > 0 && expected ? shares.reduce((d, p, i) => d + Math.abs(p - (expected[i] ?? 0)), 0) / 2 : null,
      ...(this.quantiles ? { scores: this.scoreStats(this.quantiles) } : {}),
    };
  }

  private scoreStats(quantiles: readonly ScoreQuantile[]): ScoreStats {
    const n = this.scored;
    return {
      scored: n,
      anomalyRate: n > 0 ? this.anomalous / n : null,
      drift: n > 0 ? Math.max(...quantiles.map((p, i) => Math.abs(this.below[i] / n - p.q))) : null,
    };
  }
}

/**
 * Routing health of the live model: the share of each expert, its entropy, the early-exit rate, the
 * gate's confidence and the drift from the calibration shares (and, for an anomaly package, the share of frames at
 * or above the threshold and the scores' distance to the good-image quantiles), over a sliding window of the last
 * `windowSize` decisions and over all time. Alarms are judged on the window; each is raised once when its
 * value crosses its bound and cleared once when it is back inside by `hysteresis`.
 */
export class RoutingHealth {
  private experts: number;
  private expectedShare?: readonly number[];
  private scoreQuantiles?: readonly ScoreQuantile[];
  private readonly thresholds: HealthThresholds;
  private readonly listeners = new Set<(alarm: HealthAlarm) => void>();
  // The window as a ring of (expert or -1, early exit, gate confidence or NaN).
  private readonly ringExpert: Int32Array;
  private readonly ringEarlyExit: Uint8Array;
  private readonly ringConfidence: Float64Array;
  private readonly ringScore: Float64Array;
  private readonly ringAnomalous: Uint8Array;
  private ringNext = 0;
  private window: Tally;
  private allTime: Tally;
  private readonly active = new Map<AlarmKind, HealthAlarm>();
  private readonly log: Logger;

  constructor(options: RoutingHealthOptions) {
    this.experts = options.experts;
    this.expectedShare = options.expectedShare;
    this.scoreQuantiles = options.scoreQuantiles;
    this.thresholds = { ...DEFAULT_THRESHOLDS, ...options.thresholds };
    this.log = options.logger ?? silentLogger;
    const size = options.windowSize ?? DEFAULT_WINDOW_SIZE;
    this.ringExpert = new Int32Array(size);
    this.ringEarlyExit = new Uint8Array(size);
    this.ringConfidence = new Float64Array(size);
    this.ringScore = new Float64Array(size);
    this.ringAnomalous = new Uint8Array(size);
    this.window = new Tally(this.experts, this.scoreQuantiles);
    this.allTime = new Tally(this.experts, this.scoreQuantiles);
  }

  /** Counts a decided record (others carry no routing) and judges the alarms. */
  observe(record: AuditRecord): void {
    if (record.status !== 'ok') return;
    const expert = record.expert ?? -1;
    const confidence = record.gate.length > 0 ? Math.max(...record.gate) : Number.NaN;
    const anomaly = (record as Partial<AnomalyFields>).anomaly;
    const score = anomaly ? anomaly.score : Number.NaN;
    const anomalous = anomaly?.verdict === 'anomalous';
    const size = this.ringExpert.length;
    if (this.window.decisions === size) {
      const i = this.ringNext;
      this.window.add(this.ringExpert[i], this.ringEarlyExit[i] === 1, this.ringConfidence[i], this.ringScore[i], this.ringAnomalous[i] === 1, -1);
    }
    this.ringExpert[this.ringNext] = expert;
    this.ringEarlyExit[this.ringNext] = record.earlyExit ? 1 : 0;
    this.ringConfidence[this.ringNext] = confidence;
    this.ringScore[this.ringNext] = score;
    this.ringAnomalous[this.ringNext] = anomalous ? 1 : 0;
    this.ringNext = (this.ringNext + 1) % size;
    this.window.add(expert, record.earlyExit, confidence, score, anomalous, 1);
    this.allTime.add(expert, record.earlyExit, confidence, score, anomalous, 1);
    this.judge();
  }

  /** `listener` hears each alarm once when raised and once when cleared. Returns an unsubscribe function. */
  onAlarm(listener: (alarm: HealthAlarm) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  snapshot(): { window: RoutingStats; allTime: RoutingStats; alarms: HealthAlarm[] } {
    return {
      window: this.window.stats(this.expectedShare),
      allTime: this.allTime.stats(this.expectedShare),
      alarms: [...this.active.values()],
    };
  }

  /**
   * Starts the statistics afresh for a new model (a hot swap). Active alarms stay until the new model's
   * window shows they are over, so each alarm is still cleared exactly once.
   */
  reset(expectedShare?: readonly number[], experts = expectedShare?.length ?? this.experts, scoreQuantiles?: readonly ScoreQuantile[]): void {
    // A new model may have another number of experts: the tallies take its count.
    this.experts = experts;
    this.expectedShare = expectedShare;
    this.scoreQuantiles = scoreQuantiles;
    this.window = new Tally(this.experts, scoreQuantiles);
    this.allTime = new Tally(this.experts, scoreQuantiles);
    this.ringNext = 0;
  }

  private judge(): void {
    const t = this.thresholds;
    const w = this.window.stats(this.expectedShare);
    if (w.routed >= t.minSamples) {
      const top = Math.max(...w.shares);
      const bottom = Math.min(...w.shares);
      this.update('router_collapse', w, top, t.collapseShare, top - t.collapseShare, w.shares.flatMap((s, i) => (s === top ? [i] : [])));
      this.update('expert_starved', w, bottom, t.starvedShare, t.starvedShare - bottom, w.shares.flatMap((s, i) => (s < t.starvedShare ? [i] : [])));
      if (w.drift !== null) this.update('drift', w, w.drift, t.drift, w.drift - t.drift, []);
    }
    if (w.decisions >= t.minSamples && w.earlyExitRate !== null) {
      const rate = w.earlyExitRate;
      const bound = rate < t.earlyExit.min ? t.earlyExit.min : t.earlyExit.max;
      this.update('early_exit_rate', w, rate, bound, Math.max(t.earlyExit.min - rate, rate - t.earlyExit.max), []);
    }
    const scores = w.scores;
    if (scores && scores.scored >= t.minSamples && scores.anomalyRate !== null && scores.drift !== null) {
      this.update('anomaly_rate', w, scores.anomalyRate, t.anomalyRate, scores.anomalyRate - t.anomalyRate, []);
      this.update('score_drift', w, scores.drift, t.scoreDrift, scores.drift - t.scoreDrift, []);
    }
  }

  /** One rule for every alarm: `excess` > 0 means out of bounds; clear once it is below -hysteresis. */
  private update(kind: AlarmKind, window: RoutingStats, value: number, bound: number, excess: number, experts: number[]): void {
    const raised = this.active.has(kind);
    if (!raised && excess > 0) {
      const alarm: HealthAlarm = { kind, state: 'raised', value, bound, experts, message: describe(kind, value, bound, experts, 'raised'), window };
      this.active.set(kind, alarm);
      this.emit(alarm);
    } else if (raised && excess <= -this.thresholds.hysteresis) {
      this.active.delete(kind);
      this.emit({ kind, state: 'cleared', value, bound, experts, message: describe(kind, value, bound, experts, 'cleared'), window });
    }
  }

  /** A failing listener must not fail the decision being recorded, nor keep the others from hearing the alarm. */
  private emit(alarm: HealthAlarm): void {
    for (const listener of this.listeners) {
      try {
        listener(alarm);
      } catch (err) {
        this.log.error({ alarm: alarm.kind, state: alarm.state, err: errorMessage(err) }, 'an alarm listener failed');
      }
    }
  }
}

function describe(kind: AlarmKind, value: number, bound: number, experts: number[], state: 'raised' | 'cleared'): string {
  const v = value.toFixed(3);
  const b = bound.toFixed(3);
  const who = experts.length > 0 ? ` (expert ${experts.join(', ')})` : '';
  switch (kind) {
    case 'router_collapse':
      return state === 'raised' ? `router collapse: one expert takes ${v} of routed decisions, above ${b}${who}` : `router collapse over: top expert share ${v}, bound ${b}`;
    case 'expert_starved':
      return state === 'raised' ? `expert starved: share ${v}, below ${b}${who}` : `expert starved over: lowest share ${v}, bound ${b}`;
    case 'drift':
      return state === 'raised' ? `drift: expert shares are ${v} (total variation) from calibration, above ${b}` : `drift over: distance ${v}, bound ${b}`;
    case 'early_exit_rate':
      return state === 'raised' ? `early-exit rate ${v} out of band (bound ${b})` : `early-exit rate ${v} back in band`;
    case 'anomaly_rate':
      return state === 'raised' ? `anomaly rate: ${v} of frames at or above the threshold, above ${b}` : `anomaly rate over: ${v}, bound ${b}`;
    case 'score_drift':
      return state === 'raised'
        ? `score drift: anomaly scores are ${v} (KS distance at the calibration quantiles) from good-image calibration, above ${b}`
        : `score drift over: distance ${v}, bound ${b}`;
  }
}
