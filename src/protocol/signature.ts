import { z } from 'zod';

export const SIGNATURE_FORMAT = 'sgmoe-signature/1';

export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256 (64 characters)');
export const keyIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'the signing key id (16 hex characters)');
export const base64Schema = z.string().regex(/^[A-Za-z0-9+/]+=*$/, 'base64');

/** `PKG.tar.sig`: a detached ed25519 signature over the package tar's sha256. */
export const signatureSchema = z.object({
  format: z.literal(SIGNATURE_FORMAT),
  keyId: keyIdSchema,
  algorithm: z.literal('ed25519'),
  sha256: sha256Schema,
  signature: base64Schema,
});
export type PackageSignature = z.infer<typeof signatureSchema>;
