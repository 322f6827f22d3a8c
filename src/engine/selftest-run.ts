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
  tolerance: Tolerance;
  failures: SelftestFailure[];
}

/** numpy.allclose's rule, element by element: |actual - expected| <= absolute + relative x |expected|. */
export interface Tolerance {
  absolute: number;
  relative: number;
}

interface Outside {
  /** -1: the lengths differ. */
  index: number;
  diff: number;
  expected: number;
}

export function describeTolerance({ absolute, relative }: Tolerance): string {
  return relative > 0 ? `${absolute} + ${relative} x |PyTorch|` : `${absolute}`;
}

/** The largest absolute difference, and the first element outside the tolerance (NaN is outside any). */
export function compareOutputs(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: Tolerance): { maxAbsDiff: number; outside?: Outside } {
  if (actual.length !== expected.length) return { maxAbsDiff: Infinity, outside: { index: -1, diff: Infinity, expected: NaN } };
  let maxAbsDiff = 0;
  let outside: Outside | undefined;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    maxAbsDiff = Math.max(maxAbsDiff, diff);
    if (!outside && !(diff <= tolerance.absolute + tolerance.relative * Math.abs(expected[i]))) outside = { index: i, diff, expected: expected[i] };
  }
  return { maxAbsDiff, outside };
}

function outsideMessage(outside: Outside, tolerance: Tolerance, what: string): string {
  if (outside.index < 0) return `${what} has another length than PyTorch's`;
  const at = outside.index > 0 ? ` at element ${outside.index}` : '';
  return `${what} differs from PyTorch by ${outside.diff.toExponential(2)}${at}, where PyTorch gives ${outside.expected.toExponential(3)} (tolerance ${describeTolerance(tolerance)})`;
}

/** Differences between a decision and its golden one: discrete fields exactly, numbers within tolerance. */
function compareDecision(actual: Decision, golden: GoldenDecision, tolerance: Tolerance): string[] {
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
    const { outside } = compareOutputs(a, g, tolerance);
    if (outside) problems.push(outsideMessage(outside, tolerance, name));
  }
  return problems;
}

/**
 * Runs the package's golden inputs through the engine: every part's output must be within the self-test's
 * tolerance of PyTorch's (absolute plus relative), and every decision identical. The engine's settings are restored afterwards.
 */
export async function runSelftest(engine: Engine, selftest: Selftest): Promise<SelftestReport> {
  const { routing } = selftest;
  const tolerance: Tolerance = { absolute: selftest.tolerance, relative: selftest.relativeTolerance ?? 0 };
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
        ...(engine.task.gateOutputs ?? []).map((name): Check => [`gate ${name}`, outputs.gateOutputs[name], (c.outputs[name] as number[] | undefined) ?? []]),
        ...outputs.experts.flatMap((o, e) => branch(`expert ${e}`, o, c.outputs.experts[e])),
      ];
      for (const [part, actual, expected] of checks) {
        const { maxAbsDiff, outside } = compareOutputs(actual, expected, tolerance);
        worst[part] = Math.max(worst[part] ?? 0, maxAbsDiff);
        if (outside) failures.push({ caseId: c.id, check: part, message: outsideMessage(outside, tolerance, 'output') });
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
  return { ok: failures.length === 0, cases: selftest.cases.length, maxAbsDiff: worst, tolerance, failures };
}
