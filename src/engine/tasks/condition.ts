import { z } from 'zod';
import type { Manifest } from '../../model/manifest';
import { validate } from '../../validate';
import { argmax } from '../decide';
import { ClassificationTask } from './classification';
import type { BranchOutputs, Task, TaskResult } from './task';

type ClassVerdict = ReturnType<ClassificationTask['base']>;

/** `manifest.regimes`: which operating regime each expert covers, and the unknown-regime rule. */
export const regimesSchema = z.object({
  experts: z.array(z.object({ expert: z.number().int().nonnegative(), speedRpm: z.string().nullable(), purity: z.number().nullable() })),
  unknown: z.object({
    score: z.literal('gate-confidence'),
    /** Below this top gate probability the window comes from a regime no expert was trained on. */
    minGateConfidence: z.number().min(0).max(1),
    targetFalseAlarm: z.number().min(0).max(1),
  }),
});
export type Regimes = z.infer<typeof regimesSchema>;

/**
 * Condition monitoring: classification of the machine's condition (the same decision), plus the operating regime.
 * The gate runs on every window, early exits too: its top expert is the regime, and a top probability below the
 * calibrated `minGateConfidence` flags a regime no expert was trained on.
 */
export class ConditionTask implements Task<ClassVerdict> {
  readonly name = 'condition';
  readonly gateAlways = true;
  readonly earlyExitRange = [0, 1.000001] as const; // as classification: a confidence
  readonly branchOutputs;
  readonly regimes: Regimes;
  private readonly classification: ClassificationTask;

  constructor(manifest: Manifest) {
    this.classification = new ClassificationTask(manifest);
    this.branchOutputs = this.classification.branchOutputs;
    this.regimes = validate(regimesSchema, (manifest as { regimes?: unknown }).regimes, {
      code: 'E_MANIFEST_INVALID',
      where: `manifest regimes of ${manifest.name} (task condition)`,
    });
  }

  base(outputs: BranchOutputs, threshold: number): ClassVerdict {
    return this.classification.base(outputs, threshold);
  }

  finish(verdict: ClassVerdict, experts: BranchOutputs[], weights: number[], gate: number[]): TaskResult {
    const result = this.classification.finish(verdict, experts, weights);
    const regimeExpert = gate.length > 0 ? argmax(gate) : null;
    const gateConfidence = regimeExpert === null ? null : gate[regimeExpert];
    return {
      ...result,
      extra: {
        condition: result.label,
        regimeExpert,
        gateConfidence,
        unknownRegime: gateConfidence !== null && gateConfidence < this.regimes.unknown.minGateConfidence,
      },
    };
  }
}
