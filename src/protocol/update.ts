import { z } from 'zod';
import { validate } from '../validate';
import { isoTime } from './payloads';
import { sha256Schema, signatureSchema } from './signature';

const semver = z.string().regex(/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/, 'a semantic version such as 1.2.3');

/** Where a package comes from when a site has no HTTP: retained chunks under `topic/<index>` on the broker. */
export const chunkRefSchema = z
  .object({
    topic: z.string().min(1).refine((t) => !/[+#]/.test(t), 'a topic without wildcards'),
    count: z.number().int().positive(),
    chunkBytes: z.number().int().positive(),
    bytes: z.number().int().positive(),
  })
  // Anyone on the broker can send a command: a count that does not follow from the sizes is refused up front.
  .refine((c) => c.count === Math.ceil(c.bytes / c.chunkBytes), { message: 'count must be ceil(bytes / chunkBytes)', path: ['count'] });
export type ChunkRef = z.infer<typeof chunkRefSchema>;

/**
 * The `args` of an `update` command (the request's `id` is its correlation id). The signature is optional in
 * the schema only so that an unsigned package is refused with E_SIGNATURE_MISSING rather than a schema error.
 */
export const updateRequestSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }).optional(),
    chunks: chunkRefSchema.optional(),
    sha256: sha256Schema,
    signature: signatureSchema.optional(),
    version: semver,
    /** Install even when the version is not newer than the running one (a downgrade). */
    force: z.boolean().default(false),
  })
  .refine((r) => (r.url === undefined) !== (r.chunks === undefined), { message: 'exactly one of url or chunks' });
export type UpdateRequest = z.infer<typeof updateRequestSchema>;
export type UpdateRequestInput = z.input<typeof updateRequestSchema>;

export function parseUpdateRequest(args: unknown): UpdateRequest {
  return validate(updateRequestSchema, args, { code: 'E_UPDATE_INVALID', where: 'the update request' });
}

/** The steps of an update, as the device persists and reports them; the last three are final. */
export const UPDATE_STEPS = [
  'downloading',
  'verifying',
  'unpacking',
  'selftesting',
  'staged',
  'swapping',
  'watching',
  'done',
  'failed',
  'rolled_back',
] as const;
export type UpdateStep = (typeof UPDATE_STEPS)[number];
export const FINAL_UPDATE_STEPS: ReadonlySet<UpdateStep> = new Set(['done', 'failed', 'rolled_back']);

const errorInfo = z.object({ code: z.string(), message: z.string() });

/** One step of an update, the `data` of each `cmd/update/reply` while it runs (and in the retained status). */
export const updateProgressSchema = z.object({
  correlationId: z.string().nullable(),
  step: z.enum(UPDATE_STEPS),
  /** The version being installed (or, for a rollback, the one left). */
  version: z.string(),
  message: z.string(),
  /** Set when the running model changed with this step (swap, rollback). */
  model: z.object({ name: z.string(), version: z.string(), expertShare: z.array(z.number()) }).optional(),
  error: errorInfo.optional(),
  ts: isoTime,
});
export type UpdateProgress = z.infer<typeof updateProgressSchema>;

/** The `data` of the last `cmd/update/reply`, once the update is done (the steps came before it). */
export const updateResultSchema = z.object({ step: z.literal('done'), version: z.string(), previous: z.string().nullable() });
export type UpdateResult = z.infer<typeof updateResultSchema>;

/** What an operator finds in the `data` of a successful `cmd/update/reply`. */
export const updateReplyDataSchema = z.union([updateProgressSchema, updateResultSchema]);

/** The `data` of a successful `cmd/rollback/reply`: the package ids left and now running. */
export const rollbackReplySchema = z.object({ from: z.string(), to: z.string() });
