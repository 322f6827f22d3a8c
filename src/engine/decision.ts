/** Per-stage wall time of one decision, in microseconds. In a batch, each stage's time is shared equally. */
export interface StageTimingsUs {
  trunk: number;
  base: number;
  gate: number;
  expert: number;
  total: number;
}

/** What the engine concluded for one input tensor (docs/DESIGN.md, "The decision"). */
export interface Decision {
  frameId: string;
  /** Index into the manifest's labels, and the label itself. */
  labelIndex: number;
  label: string;
  score: number;
  probabilities: number[];
  /** The top-1 expert that ran, or null on an early exit / base-only. */
  expert: number | null;
  /** Every expert that ran (topK > 1), in gate order. */
  experts: number[];
  /** Gate softmax over all experts; empty when the gate did not run (base-only mode). */
  gate: number[];
  earlyExit: boolean;
  baseConfidence: number;
  /** Multiply-accumulates actually spent on this sample. */
  macs: number;
  timingsUs: StageTimingsUs;
  /** Execution provider each part ran on, e.g. { trunk: 'cpu', ... , expert: 'cpu' }. */
  providers: Readonly<Record<string, string>>;
  /** Shared by every decision of the same engine (frozen). */
  model: Readonly<{ name: string; version: string }>;
  /** The task's own fields (src/engine/tasks/), carried into every record of the decision. */
  extra?: Readonly<Record<string, unknown>>;
}

/** The fields every record of a decision carries: the audit row, the MQTT result, `sgmoe infer`'s line. */
export function decisionEssentials(d: Decision) {
  return {
    label: d.label,
    score: d.score,
    expert: d.expert,
    earlyExit: d.earlyExit,
    baseConfidence: d.baseConfidence,
    gate: d.gate,
    macs: d.macs,
    timingsUs: d.timingsUs,
    ...d.extra,
  };
}
