import { z } from 'zod';
import type { Manifest } from '../../model/manifest';
import { validate } from '../../validate';
import { argmax } from '../decide';
import { ClassificationTask } from './classification';
import type { BranchOutputs, Task, TaskResult } from './task';

/** The gate's output that measures how far a window's gate input lies from the regimes the experts were trained on. */
const REGIME_DISTANCE = 'regime_distance';

type ClassVerdict = ReturnType<ClassificationTask['base']>;

/** `manifest.regimes`: which operating regime each expert covers, and the unknown-regime rule. */
export const regimesSchema = z.object({
  experts: z.array(z.object({ expert: z.number().int().nonnegative(), speedRpm: z.string().nullable(), purity: z.number().nullable() })),
  unknown: z.object({
    score: z.literal('gate-confidence'),
    /** Below this top gate probability the window comes from a regime no expert was trained on. */
    minGateConfidence: z.number().min(0).max(1),
    /**
     * Above this distance of the gate's input to the nearest regime centroid (the gate's `regime_distance` output)
     * too. Packages without it flag on the gate confidence alone.
     */
    maxRegimeDistance: z.number().nonnegative().optional(),
    targetFalseAlarm: z.number().min(0).max(1),
  }),
});
export type Regimes = z.infer<typeof regimesSchema>;

/**
 * Condition monitoring: classification of the machine's condition (the same decision), plus the operating regime.
 * The gate runs on every window, early exits too: its top expert is the regime. A window is in an unknown regime when
 * the top gate probability is below `minGateConfidence` (a regime between the trained ones) or, in packages that
 * ship it, the gate input's distance to the nearest regime is above `maxRegimeDistance` (one beyond them, where a
 * linear gate's softmax grows more confident, not less).
 */
export class ConditionTask implements Task<ClassVerdict> {
  readonly name = 'condition';
  readonly gateAlways = true;
  readonly earlyExitRange = [0, 1.000001] as const; // as classification: a confidence
  readonly branchOutputs;
  readonly gateOutputs: readonly string[];
  readonly regimes: Regimes;
  private readonly classification: ClassificationTask;

  constructor(manifest: Manifest) {
    this.classification = new ClassificationTask(manifest);
    this.branchOutputs = this.classification.branchOutputs;
    this.regimes = validate(regimesSchema, (manifest as { regimes?: unknown }).regimes, {
      code: 'E_MANIFEST_INVALID',
      where: `manifest regimes of ${manifest.name} (task condition)`,
    });
    this.gateOutputs = this.regimes.unknown.maxRegimeDistance === undefined ? [] : [REGIME_DISTANCE];
  }

  base(outputs: BranchOutputs, threshold: number): ClassVerdict {
    return this.classification.base(outputs, threshold);
  }

  finish(verdict: ClassVerdict, experts: BranchOutputs[], weights: number[], gate: number[], gateOutputs: BranchOutputs): TaskResult {
    const result = this.classification.finish(verdict, experts, weights);
    const regimeExpert = gate.length > 0 ? argmax(gate) : null;
    const gateConfidence = regimeExpert === null ? null : gate[regimeExpert];
    const regimeDistance = gateOutputs[REGIME_DISTANCE]?.[0] ?? null;
    const { minGateConfidence, maxRegimeDistance } = this.regimes.unknown;
    return {
      ...result,
      extra: {
        condition: result.label,
        regimeExpert,
        gateConfidence,
        ...(maxRegimeDistance === undefined ? {} : { regimeDistance }),
        unknownRegime:
          (gateConfidence !== null && gateConfidence < minGateConfidence) ||
          (regimeDistance !== null && maxRegimeDistance !== undefined && regimeDistance > maxRegimeDistance),
      },
    };
  }
}
