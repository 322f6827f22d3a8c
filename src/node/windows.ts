import type { Decision } from '../engine/decision';
import type { AnomalyFields } from '../engine/tasks';
import { LatencyWindow } from './latency';

/** Recent decisions behind each window's latency percentiles and frames/s. */
const LATENCY_WINDOW = 1000;

/**
 * The two spans every surface (summary, dashboard, health, /metrics) reports decision figures over, by these
 * names: since the node started, and since the model running now was loaded or swapped in.
 */
export const WINDOW_LABELS = { sinceStart: 'since start', sinceModel: 'since the current model' } as const;
export type WindowName = keyof typeof WINDOW_LABELS;

export interface WindowStats {
  label: (typeof WINDOW_LABELS)[WindowName];
  /** When the span began, ISO. */
  since: string;
  /** The model of the span (`sinceModel`), or null (`sinceStart` may cover several). */
  model: { name: string; version: string } | null;
  decided: number;
  earlyExitRate: number | null;
  /** Decisions that ran an expert, and each expert's share of them (by index; after a swap, the new model's). */
  routed: number;
  expertShares: number[];
  /** Anomaly packages: decisions flagged anomalous (null when no decision of the span had an anomaly verdict). */
  anomalous: number | null;
  /** Over the span's last 1000 decisions. */
  latencyUs: { p50: number; p99: number } | null;
}

/** Running counts of the decisions in one span. */
export class DecisionWindow {
  private decided = 0;
  private earlyExits = 0;
  private anomalous: number | null = null;
  private expertCounts: number[];
  readonly latency = new LatencyWindow(LATENCY_WINDOW);
  private readonly since = new Date().toISOString();

  constructor(
    private readonly name: WindowName,
    experts: number,
    private readonly model: { name: string; version: string } | null = null,
  ) {
    this.expertCounts = new Array<number>(experts).fill(0);
  }

  add(decision: Decision): void {
    this.decided++;
    if (decision.earlyExit) this.earlyExits++;
    if (decision.expert !== null) {
      // Since start may span models with more experts than the first.
      while (this.expertCounts.length <= decision.expert) this.expertCounts.push(0);
      this.expertCounts[decision.expert]++;
    }
    const verdict = (decision.extra as Partial<AnomalyFields> | undefined)?.anomaly?.verdict;
    if (verdict) this.anomalous = (this.anomalous ?? 0) + (verdict === 'anomalous' ? 1 : 0);
    this.latency.add(decision.timingsUs.total);
  }

  stats(): WindowStats {
    const routed = this.expertCounts.reduce((a, b) => a + b, 0);
    return {
      label: WINDOW_LABELS[this.name],
      since: this.since,
      model: this.model,
      decided: this.decided,
      earlyExitRate: this.decided === 0 ? null : this.earlyExits / this.decided,
      routed,
      expertShares: this.expertCounts.map((c) => (routed === 0 ? 0 : c / routed)),
      anomalous: this.anomalous,
      latencyUs: this.latency.percentiles(),
    };
  }
}
