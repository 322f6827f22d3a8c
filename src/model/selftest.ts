import { z } from 'zod';
import { readValidated } from '../validate';

const floats = z.array(z.number());

const goldenDecisionSchema = z.object({
  label: z.number().int().nonnegative(),
  score: z.number(),
  probabilities: floats,
  expert: z.number().int().nonnegative().nullable(),
  experts: z.array(z.number().int().nonnegative()),
  earlyExit: z.boolean(),
  baseConfidence: z.number(),
});

/** The factories write 1e-3 / 1e-4 and 1e-5; ORT and PyTorch were measured at most 3.7e-6 apart, relatively. */
export const MAX_TOLERANCE = 1e-2;
export const MAX_RELATIVE_TOLERANCE = 1e-4;

/** selftest.json: golden inputs with the outputs PyTorch produced for every part, and the final decisions. */
export const selftestSchema = z.object({
  format: z.literal('sgmoe-selftest/1'),
  /** Absolute part of the tolerance of every compared number: |ORT - PyTorch| <= tolerance + relativeTolerance x |PyTorch|. */
  // Both bounded: a package whose tolerance was raised until a wrong part passes (all zeros at rtol 1) is refused.
  tolerance: z.number().positive().max(MAX_TOLERANCE),
  // Relative part, as numpy.allclose's rtol: float32 keeps a share of a value, so a score of 6e4 cannot hold 1e-3.
  // Absent in packages built before it: absolute only, as they were checked then.
  relativeTolerance: z.number().nonnegative().max(MAX_RELATIVE_TOLERANCE).optional(),
  routing: z.object({ threshold: z.number(), topK: z.number().int().positive(), baseWeight: z.number() }),
  cases: z
    .array(
      z.object({
        id: z.string(),
        sample: z.string().nullable().optional(),
        input: floats,
        // Base outputs by name beside features and gate_logits; an expert's entry is its only output, or all by name.
        outputs: z
          .object({ features: floats, gate_logits: floats, experts: z.array(z.union([floats, z.record(z.string(), floats)])) })
          .catchall(z.union([floats, z.array(z.union([floats, z.record(z.string(), floats)]))])),
        decision: goldenDecisionSchema,
        decisionTop2: goldenDecisionSchema.optional(),
      }),
    )
    .min(1),
});

export type Selftest = z.infer<typeof selftestSchema>;
export type SelftestCase = Selftest['cases'][number];
export type GoldenDecision = z.infer<typeof goldenDecisionSchema>;

export async function loadSelftest(path: string): Promise<Selftest> {
  return readValidated(path, selftestSchema, { code: 'E_SELFTEST_INVALID', where: `sgmoe-selftest/1 file ${path}` });
}
