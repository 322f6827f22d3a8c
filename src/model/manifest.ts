import { z } from 'zod';
import { signalSpecSchema } from '../ingest/kinds/signal/spec';
import { SgmoeError } from '../errors';
import { validate } from '../validate';

export const PACKAGE_FORMAT = 'sgmoe-package/1';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256 (64 characters)');
/** Part files live inside the package: relative, forward slashes, no `..`. */
const partFile = z
  .string()
  .min(1)
  .refine((f) => !f.startsWith('/') && !f.split(/[\\/]/).includes('..'), 'a relative path inside the package');

export const partSchema = z.object({
  file: partFile,
  sha256,
  macs: z.number().int().nonnegative(),
  params: z.number().int().nonnegative().optional(),
});

export const inputSpecSchema = z
  .object({
    /** The input kind (docs/DESIGN.md, "Seams"); packages without one take images. */
    kind: z.literal('image').default('image'),
    name: z.string().min(1),
    channels: z.union([z.literal(1), z.literal(3)]),
    height: z.number().int().positive(),
    width: z.number().int().positive(),
    colorspace: z.enum(['gray', 'rgb', 'bgr']),
    mean: z.array(z.number()).min(1),
    std: z.array(z.number().positive()).min(1),
    layout: z.literal('NCHW'),
    invert: z.boolean().default(false),
    /**
     * Smallest frame (or ROI) the model can judge; smaller ones are refused with E_FRAME_TOO_SMALL. Absent: a
     * quarter of the input size per side (more enlargement than that leaves the model guessing).
     */
    minSourceSize: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).strict().optional(),
    /**
     * The region of the (EXIF-oriented) frame the model was trained on, for a fixed line camera; a source's own `roi`
     * overrides it. Absent: the whole frame.
     */
    roi: z
      .object({ x: z.number().int().min(0), y: z.number().int().min(0), width: z.number().int().min(1), height: z.number().int().min(1) })
      .strict()
      .optional(),
  })
  .refine((s) => s.mean.length === s.channels && s.std.length === s.channels, {
    message: 'mean and std need one value per channel',
  })
  .refine((s) => (s.colorspace === 'gray') === (s.channels === 1), {
    message: 'colorspace gray goes with 1 channel, rgb/bgr with 3',
  });

export const calibrationPointSchema = z.object({
  /** The early-exit threshold of this point (classification: a base confidence in [0, 1]; anomaly: a base score). */
  threshold: z.number(),
  /** Classification only: accuracy on validation at this point. */
  accuracy: z.number().min(0).max(1).optional(),
  expertRate: z.number().min(0).max(1),
  meanMacs: z.number().nonnegative(),
});

/** Task anomaly: the final score on held-out good images, so a false-alarm rate becomes a threshold on the device. */
export const anomalyCalibrationSchema = z.object({
  falseAlarmRate: z.number().gt(0).lt(1),
  threshold: z.number(),
  quantiles: z
    .array(z.object({ q: z.number().gt(0).lt(1), score: z.number() }))
    .min(2)
    .refine((qs) => qs.every((p, i) => i === 0 || (p.q > qs[i - 1].q && p.score >= qs[i - 1].score)), 'quantiles rising in q and score'),
  heldOutGood: z.number().int().positive(),
  /** Rows and columns of the score map every branch part outputs. */
  grid: z.tuple([z.number().int().positive(), z.number().int().positive()]),
});

export const manifestSchema = z
  .object({
    format: z.literal(PACKAGE_FORMAT),
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'a lowercase package name'),
    version: z.string().regex(/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/, 'a semantic version such as 1.2.3'),
    /** Which task module decides (src/engine/tasks/). */
    task: z.enum(['classification', 'condition', 'anomaly']),
    description: z.string().optional(),
    labels: z.array(z.string().min(1)).min(2),
    /** `input.kind` picks the input kind (src/ingest/kinds); absent means image. */
    input: z.union([signalSpecSchema, inputSpecSchema]),
    parts: z.object({
      trunk: partSchema,
      base: partSchema,
      gate: partSchema,
      experts: z.array(partSchema).min(1),
    }),
    routing: z.object({
      topK: z.number().int().positive(),
      earlyExit: z.object({ threshold: z.number() }),
      ensemble: z.object({ baseWeight: z.number().min(0).max(1) }),
    }),
    calibration: z.object({
      points: z.array(calibrationPointSchema).min(1),
      expertShare: z.array(z.number().min(0).max(1)),
      rule: z.string().optional(),
      anomaly: anomalyCalibrationSchema.optional(),
    }),
    selftest: partFile,
    samples: partFile.optional(),
    report: partFile.optional(),
  })
  .passthrough()
  .refine((m) => m.routing.topK <= m.parts.experts.length, {
    message: 'routing.topK cannot exceed the number of experts',
    path: ['routing', 'topK'],
  })
  .refine((m) => m.task !== 'classification' || [m.routing.earlyExit.threshold, ...m.calibration.points.map((p) => p.threshold)].every((t) => t >= 0 && t <= 1.000001), {
    message: 'classification early-exit thresholds are base confidences in [0, 1] (a hair above 1 = never exit early)',
    path: ['routing', 'earlyExit', 'threshold'],
  })
  .refine((m) => m.task !== 'anomaly' || m.calibration.anomaly !== undefined, {
    message: 'an anomaly package needs calibration.anomaly (the good-image score quantiles, target false-alarm rate and threshold)',
    path: ['calibration', 'anomaly'],
  })
  .refine((m) => m.calibration.expertShare.length === m.parts.experts.length, {
    message: 'calibration.expertShare needs one share per expert',
    path: ['calibration', 'expertShare'],
  });

export type Manifest = z.infer<typeof manifestSchema>;
/** An image input; `ManifestInput` is any kind's. */
export type InputSpec = z.infer<typeof inputSpecSchema>;
export type ManifestInput = Manifest['input'];
export type PartSpec = z.infer<typeof partSchema>;
export type CalibrationPoint = z.infer<typeof calibrationPointSchema>;
export type AnomalyCalibration = z.infer<typeof anomalyCalibrationSchema>;

/** Per-sample dimensions of the trunk's input tensor (after the batch axis). */
export function sampleShape(input: ManifestInput): number[] {
  return input.kind === 'signal' ? [input.channels, input.window] : [input.channels, input.height, input.width];
}

/** The image input of a package, for what handles images only (`sgmoe infer`, the image benchmarks). */
export function imageInputOf(manifest: Manifest): InputSpec {
  if (manifest.input.kind === 'signal') {
    throw new SgmoeError('E_INPUT_KIND', `expected a package with image input, found ${manifest.name} with input kind signal (run it with sgmoe run --source dir:PATH or mqtt:TOPIC)`);
  }
  return manifest.input;
}

/** Validates a parsed manifest.json once, at the edge; the rest of the SDK trusts the type. */
export function parseManifest(json: unknown, where = 'manifest.json'): Manifest {
  return validate(manifestSchema, json, { code: 'E_MANIFEST_INVALID', where: `${PACKAGE_FORMAT} manifest ${where}` });
}
