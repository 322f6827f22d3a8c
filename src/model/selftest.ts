import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { SgmoeError } from '../errors';

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

/** selftest.json: golden inputs with the outputs PyTorch produced for every part, and the final decisions. */
export const selftestSchema = z.object({
  format: z.literal('sgmoe-selftest/1'),
  tolerance: z.number().positive(),
  routing: z.object({ threshold: z.number(), topK: z.number().int().positive(), baseWeight: z.number() }),
  cases: z
    .array(
      z.object({
        id: z.string(),
        sample: z.string().nullable().optional(),
        input: floats,
        outputs: z.object({ features: floats, logits: floats, gate_logits: floats, experts: z.array(floats) }),
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
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new SgmoeError('E_SELFTEST_INVALID', `cannot read ${path} as JSON: ${(err as Error).message}`, undefined, { cause: err });
  }
  const parsed = selftestSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new SgmoeError('E_SELFTEST_INVALID', `${path} is not a valid sgmoe-selftest/1 file: ${problems.join('; ')}`);
  }
  return parsed.data;
}
