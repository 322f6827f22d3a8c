import { z } from 'zod';
import type { Decision } from '../engine/decision';

/** `manifest.regimes` of a condition-monitoring package: what each expert covers and the unknown-regime rule. */
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

/** What a maintenance result adds to a decision: the regime expert (the gate's top-1, early exit or not) and the flag. */
export interface ConditionFields {
  condition: string;
  regimeExpert: number | null;
  gateConfidence: number | null;
  unknownRegime: boolean;
}

/** The regimes section of a manifest, or undefined for packages without one (image packages). */
export function regimesOf(manifest: unknown): Regimes | undefined {
  const parsed = regimesSchema.safeParse((manifest as { regimes?: unknown }).regimes);
  return parsed.success ? parsed.data : undefined;
}

export function conditionOf(decision: Decision, regimes: Regimes): ConditionFields {
  if (decision.gate.length === 0) return { condition: decision.label, regimeExpert: null, gateConfidence: null, unknownRegime: false };
  let top = 0;
  for (let e = 1; e < decision.gate.length; e++) if (decision.gate[e] > decision.gate[top]) top = e;
  const confidence = decision.gate[top];
  return { condition: decision.label, regimeExpert: top, gateConfidence: confidence, unknownRegime: confidence < regimes.unknown.minGateConfidence };
}
