import { sign, verify, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { SgmoeError, errorCode } from '../errors';
import { readValidated, validate } from '../validate';
import { sha256File } from '../model/integrity';
import { SIGNATURE_FORMAT, signatureSchema, type PackageSignature } from '../protocol/signature';
import { keyIdOf, type TrustedKeys } from './keys';

/** What is signed: the digest, prefixed with the format so a signature cannot be replayed as anything else. */
function signedBytes(sha256: string): Buffer {
  return Buffer.from(`${SIGNATURE_FORMAT}:${sha256}`, 'utf8');
}

export async function signPackage(tarPath: string, privateKey: KeyObject): Promise<PackageSignature> {
  const sha256 = await sha256File(tarPath);
  return {
    format: SIGNATURE_FORMAT,
    keyId: keyIdOf(privateKey),
    algorithm: 'ed25519',
    sha256,
    signature: sign(null, signedBytes(sha256), privateKey).toString('base64'),
  };
}

/** Writes `PKG.tar.sig` next to the package and returns its path. */
export async function writeSignature(tarPath: string, signature: PackageSignature): Promise<string> {
  const path = `${tarPath}.sig`;
  await writeFile(path, JSON.stringify(signature, null, 2) + '\n');
  return path;
}

export function parseSignature(json: unknown, where = 'signature'): PackageSignature {
  return validate(signatureSchema, json, { code: 'E_SIGNATURE_INVALID', where: `${SIGNATURE_FORMAT} signature ${where}` });
}

export async function readSignature(path: string): Promise<PackageSignature> {
  return readValidated(path, signatureSchema, {
    code: 'E_SIGNATURE_INVALID',
    missing: 'E_SIGNATURE_MISSING',
    where: `${SIGNATURE_FORMAT} signature ${path}`,
  });
}

/**
 * Accepts a package only when its digest is the one signed and the signature is valid under a trusted key.
 * `sha256` is the digest computed from the bytes received, never one taken from the sender.
 */
export function checkSignature(signature: PackageSignature, sha256: string, trusted: TrustedKeys): { keyId: string } {
  if (signature.sha256 !== sha256) {
    throw new SgmoeError('E_HASH_MISMATCH', `the package's sha256 is ${sha256}, the signature covers ${signature.sha256}`, {
      expected: signature.sha256,
      actual: sha256,
    });
  }
  const key = trusted.get(signature.keyId);
  if (!key) {
    throw new SgmoeError(
      'E_SIGNATURE_UNKNOWN_KEY',
      `signed by key ${signature.keyId}, expected one of the trusted keys [${trusted.ids.join(', ')}]`,
      { keyId: signature.keyId },
    );
  }
  if (!verify(null, signedBytes(sha256), key, Buffer.from(signature.signature, 'base64'))) {
    throw new SgmoeError('E_SIGNATURE_INVALID', `the signature by key ${signature.keyId} does not verify for sha256 ${sha256}`, {
      keyId: signature.keyId,
    });
  }
  return { keyId: signature.keyId };
}

/** The offline check of `sgmoe model verify PKG.tar --pubkey KEY`: hash the tar, then check its signature. */
export async function verifySignedPackage(tarPath: string, signature: PackageSignature, trusted: TrustedKeys): Promise<{ sha256: string; keyId: string }> {
  const sha256 = await sha256File(tarPath);
  return { sha256, ...checkSignature(signature, sha256, trusted) };
}

/** The signature `sgmoe model sign` wrote beside a package tar; a missing one says how to make it. */
export async function readPackageSignature(tarPath: string): Promise<PackageSignature> {
  try {
    return await readSignature(`${tarPath}.sig`);
  } catch (err) {
    if (errorCode(err) !== 'E_SIGNATURE_MISSING') throw err;
    throw new SgmoeError(
      'E_SIGNATURE_MISSING',
      `${tarPath} is not signed: expected ${tarPath}.sig beside it, found none. Devices refuse unsigned packages: run \`sgmoe model sign ${tarPath} --key OPERATOR.key\` first`,
      { path: `${tarPath}.sig` },
    );
  }
}
