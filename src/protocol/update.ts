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

/**
 * The steps of an update, as the device reports them. `requested` is announced, never persisted; the others are
 * persisted before they start (a restart undoes a half-done one). The last three are final.
 */
export const UPDATE_STEPS = [
  'requested',
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
/** The steps that go out as progress replies; a final step is told by the request's one final reply instead. */
export const PROGRESS_STEPS: ReadonlySet<UpdateStep> = new Set(UPDATE_STEPS.filter((s) => !FINAL_UPDATE_STEPS.has(s)));

const errorInfo = z.object({ code: z.string(), message: z.string() });
const runningModel = z.object({ name: z.string(), version: z.string(), expertShare: z.array(z.number()) });

/**
 * One step of an update: the `data` of each progress reply on `cmd/update/reply` (`"progress": true`), and what
 * the node hands to its status and audit log. Failed and rolled-back events carry `error` and `at`, the step they
 * ended in.
 */
export const updateProgressSchema = z.object({
  correlationId: z.string().nullable(),
  step: z.enum(UPDATE_STEPS),
  /** The version being installed (or, for a rollback, the one left). */
  version: z.string(),
  message: z.string(),
  /** On `watching`: how long the device watches its health before it reports done (its `fleet.watch.windowMs`). */
  watchMs: z.number().int().nonnegative().optional(),
  /** Set when the running model changed with this step (swap, rollback). */
  model: runningModel.optional(),
  error: errorInfo.optional(),
  /** On `failed`: the step the update had reached (`requested` = refused before anything was fetched). */
  at: z.enum(UPDATE_STEPS).optional(),
  ts: isoTime,
});
export type UpdateProgress = z.infer<typeof updateProgressSchema>;

/** The `data` of the one final, successful `cmd/update/reply` (a failure is the final reply with `ok: false`). */
export const updateResultSchema = z.object({ step: z.literal('done'), version: z.string(), previous: z.string().nullable() });
export type UpdateResult = z.infer<typeof updateResultSchema>;

/** The `data` of a successful `cmd/rollback/reply`: the package ids left and now running. */
export const rollbackReplySchema = z.object({ from: z.string(), to: z.string() });

/** `info.update` of the retained status: the update running now (absent when none runs). */
export const currentUpdateSchema = z.object({
  step: z.enum(UPDATE_STEPS),
  version: z.string(),
  correlationId: z.string().nullable(),
  /** When this step began. */
  since: isoTime,
});
export type CurrentUpdate = z.infer<typeof currentUpdateSchema>;

/** `info.lastUpdate` of the retained status: how the last update or rollback ended; history, not the state. */
export const lastUpdateSchema = z.object({
  outcome: z.enum(['done', 'failed', 'rolled_back']),
  version: z.string(),
  correlationId: z.string().nullable(),
  error: errorInfo.optional(),
  at: z.enum(UPDATE_STEPS).optional(),
  ts: isoTime,
});
export type LastUpdate = z.infer<typeof lastUpdateSchema>;

/** `info.fleet` of the retained status: what an operator needs to plan a rollout (publish sets its deadlines by it). */
export const fleetInfoSchema = z.object({
  watchWindowMs: z.number().int().nonnegative(),
  /** How often the device publishes `health`: a canary window shorter than this sees none. */
  healthIntervalMs: z.number().int().positive().optional(),
});
export type FleetInfo = z.infer<typeof fleetInfoSchema>;
