import { z } from 'zod';
import { validate } from '../validate';
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
