import type { GoldenDecision, Selftest } from '../model/selftest';
import type { Decision } from './decision';
import type { Engine } from './engine';
import type { BranchOutputs } from './tasks';

type Check = [part: string, actual: ArrayLike<number>, expected: number[]];
/** A golden branch output: the only output as an array, or every output by name. */
type Golden = number[] | Record<string, number[]>;

export interface SelftestFailure {
  caseId: string;
  /** The part or decision that disagreed: "trunk", "expert 2", "decision", "decision top-2". */
  check: string;
  message: string;
}

export interface SelftestReport {
  ok: boolean;
  cases: number;
  /** Largest absolute difference seen per part output, against the factory's PyTorch outputs. */
  maxAbsDiff: Record<string, number>;
  failures: SelftestFailure[];
}

function maxAbsDiff(actual: ArrayLike<number>, expected: number[]): number {
  if (actual.length !== expected.length) return Infinity;
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(actual[i] - expected[i]));
  return max;
}

/** Differences between a decision and its golden one: discrete fields exactly, numbers within tolerance. */
function compareDecision(actual: Decision, golden: GoldenDecision, tolerance: number): string[] {
  const problems: string[] = [];
  if (actual.labelIndex !== golden.label) problems.push(`label ${actual.labelIndex}, expected ${golden.label}`);
  if (actual.earlyExit !== golden.earlyExit) problems.push(`earlyExit ${actual.earlyExit}, expected ${golden.earlyExit}`);
  if (actual.expert !== golden.expert) problems.push(`expert ${actual.expert}, expected ${golden.expert}`);
  if (actual.experts.join() !== golden.experts.join()) problems.push(`experts [${actual.experts}], expected [${golden.experts}]`);
  for (const [name, a, g] of [
    ['score', [actual.score], [golden.score]],
    ['baseConfidence', [actual.baseConfidence], [golden.baseConfidence]],
    ['probabilities', actual.probabilities, golden.probabilities],
  ] as const) {
    const diff = maxAbsDiff(a, [...g]);
    if (!(diff <= tolerance)) problems.push(`${name} differs by ${diff.toExponential(2)} (tolerance ${tolerance})`);
  }
  return problems;
}

/**
 * Runs the package's golden inputs through the engine: every part's output must be within the self-test's
 * tolerance of PyTorch's, and every decision identical. The engine's settings are restored afterwards.
 */
export async function runSelftest(engine: Engine, selftest: Selftest): Promise<SelftestReport> {
  const { tolerance, routing } = selftest;
  const failures: SelftestFailure[] = [];
  const worst: Record<string, number> = {};
  const saved = engine.getSettings();
  try {
    for (const c of selftest.cases) {
      const input = Float32Array.from(c.input);
      const outputs = await engine.runAllParts(input);
      const names = engine.task.branchOutputs.map((o) => o.name);
      const branch = (part: string, actual: BranchOutputs, expected: Golden | undefined): Check[] =>
        names.map((name, i) => [
          names.length === 1 ? part : `${part} ${name}`,
          actual[name],
          Array.isArray(expected) ? (i === 0 ? (expected as number[]) : []) : (expected?.[name] ?? []),
        ]);
      const checks: Check[] = [
        ['trunk', outputs.features, c.outputs.features],
        ...branch('base', outputs.base, Object.fromEntries(names.map((name) => [name, c.outputs[name] as number[]]))),
        ['gate', outputs.gateLogits, c.outputs.gate_logits],
        ...outputs.experts.flatMap((o, e) => branch(`expert ${e}`, o, c.outputs.experts[e])),
      ];
      for (const [part, actual, expected] of checks) {
        const diff = maxAbsDiff(actual, expected);
        worst[part] = Math.max(worst[part] ?? 0, diff);
        if (!(diff <= tolerance)) {
          failures.push({ caseId: c.id, check: part, message: `output differs from PyTorch by ${diff.toExponential(2)} (tolerance ${tolerance})` });
        }
      }
      const golden: Array<[string, GoldenDecision | undefined, number]> = [
        ['decision', c.decision, routing.topK],
        ['decision top-2', c.decisionTop2, 2],
      ];
      for (const [check, expected, topK] of golden) {
        if (!expected) continue;
        engine.configure({ threshold: routing.threshold, topK, mode: 'moe', forcedExpert: null });
        const problems = compareDecision(await engine.infer(input, c.id), expected, tolerance);
        if (problems.length > 0) failures.push({ caseId: c.id, check, message: problems.join('; ') });
      }
    }
  } finally {
    engine.configure(saved);
  }
  return { ok: failures.length === 0, cases: selftest.cases.length, maxAbsDiff: worst, failures };
}
