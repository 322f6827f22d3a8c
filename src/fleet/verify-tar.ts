import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineOptions } from '../engine/engine';
import { verifyPackage, type VerifyReport } from '../engine/verify';
import { errorCode, errorMessage } from '../errors';
import { DEFAULT_UPDATE_LIMITS } from './agent';
import { readPublicKey, TrustedKeys } from './keys';
import { readSignature, verifySignedPackage } from './signature';
import { unpackPackage } from './unpack';

/**
 * `sgmoe model verify PKG.tar --pubkey KEY`: the tar's digest and its signature (`PKG.tar.sig`) offline, then,
 * unpacked safely into a temp folder, everything `verify DIR` checks. ok only when all of it holds.
 */
export async function verifySignedTar(tarPath: string, pubkeyPath: string, options: EngineOptions = {}): Promise<VerifyReport> {
  let checked: { sha256: string; keyId: string };
  try {
    const trusted = new TrustedKeys([await readPublicKey(pubkeyPath)]);
    checked = await verifySignedPackage(tarPath, await readSignature(`${tarPath}.sig`), trusted);
  } catch (err) {
    return { ok: false, checks: [{ name: 'signature', ok: false, detail: errorMessage(err), code: errorCode(err) }] };
  }
  const signature = { name: 'signature', ok: true, detail: `sha256 ${checked.sha256} signed by key ${checked.keyId}` };
  const dir = await mkdtemp(join(tmpdir(), 'sgmoe-verify-'));
  try {
    await unpackPackage(tarPath, dir, { maxBytes: DEFAULT_UPDATE_LIMITS.maxUnpackedBytes, maxFiles: DEFAULT_UPDATE_LIMITS.maxFiles });
    const report = await verifyPackage(dir, options);
    return { ...report, checks: [signature, ...report.checks] };
  } catch (err) {
    return { ok: false, checks: [signature, { name: 'unpack', ok: false, detail: errorMessage(err), code: errorCode(err) }] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
