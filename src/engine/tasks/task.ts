/** One sample's outputs of a branch part (the base or an expert), by output name. */
export type BranchOutputs = Readonly<Record<string, Float32Array>>;

/** What a task concludes from the base branch alone; tasks add what their `finish` needs again. */
export interface BaseVerdict {
  /** The value compared with the early-exit threshold (classification: the top base probability). */
  confidence: number;
  earlyExit: boolean;
}

/** The task's part of a decision: its verdict, score and per-label values, and any fields of its own. */
export interface TaskResult {
  labelIndex: number;
  label: string;
  score: number;
  probabilities: number[];
  /** Task-specific fields, carried as they are into the MQTT result, the audit record and `sgmoe infer`'s line. */
  extra?: Readonly<Record<string, unknown>>;
}

/**
 * A task (docs/DESIGN.md, "Seams"): what the branch parts output, when the base alone decides, and how
 * base and experts combine. The engine's batching, gather/scatter, providers and expert cache know nothing else.
 */
export interface Task<V extends BaseVerdict = BaseVerdict> {
  readonly name: string;
  /** The outputs every branch part gives per sample, checked at load: output name and per-sample dimensions. */
  readonly branchOutputs: ReadonlyArray<{ readonly name: string; readonly dims: readonly number[] }>;
  /**
   * The gate's outputs the task reads per sample besides `gate_logits` (one value each, checked at load); missing or
   * empty: the gate has `gate_logits` only.
   */
  readonly gateOutputs?: readonly string[];
  /** The task reads the gate of every sample, early exits too (the gate then runs on the whole batch). */
  readonly gateAlways?: boolean;
  /** The values an early-exit threshold may take (classification: a confidence; anomaly: any base score). */
  readonly earlyExitRange: readonly [min: number, max: number];
  /** The base branch's verdict for one sample at this early-exit threshold. */
  base(outputs: BranchOutputs, threshold: number): V;
  /**
   * The final result: the base alone when no expert ran, else mixed with the experts that ran (gate weights).
   * `gate` is the gate's softmax over all experts, empty when the gate did not run for this sample; `gateOutputs`
   * holds its `gateOutputs` for this sample, empty then too.
   */
  finish(verdict: V, experts: BranchOutputs[], weights: number[], gate: number[], gateOutputs: BranchOutputs): TaskResult;
  /** Tasks with a threshold calibrated on good data (anomaly): move it to flag this share of good frames. */
  setFalseAlarmRate?(rate: number): number;
  /** Tasks with a threshold calibrated on good data (anomaly): the one in force now. */
  readonly currentThreshold?: number;
  /** ... and the false-alarm rate it was set for (the package's calibrated one until moved). */
  readonly currentFalseAlarmRate?: number;
}
