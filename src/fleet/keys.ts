import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SgmoeError, errorMessage } from '../errors';

/** A key's id: the first 16 hex characters of the sha256 of its public key (SPKI DER). */
export function keyIdOf(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

export interface GeneratedKey {
  keyId: string;
  privateKeyPath: string;
  publicKeyPath: string;
}

/**
 * Makes an ed25519 signing key: `OUT.key` (private, PKCS#8 PEM, mode 0600) and `OUT.pub` (SPKI PEM) for the
 * devices' trusted keys. Existing files are never overwritten: losing a fleet's signing key is not undoable.
 */
export async function generateSigningKey(out: string): Promise<GeneratedKey> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const privateKeyPath = `${out}.key`;
  const publicKeyPath = `${out}.pub`;
  // `sgmoe model keygen keys/operator` on a clean machine: the folder is made (private: it will hold the key).
  await mkdir(dirname(privateKeyPath), { recursive: true, mode: 0o700 });
  try {
    await writeFile(privateKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { flag: 'wx', mode: 0o600 });
    await writeFile(publicKeyPath, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SgmoeError('E_KEY_EXISTS', `a key already exists at ${out}.key or ${out}.pub: refusing to overwrite a fleet's signing key (choose another OUT)`, undefined, { cause: err });
    }
    throw new SgmoeError('E_KEY_WRITE', `cannot write a new key pair at ${out}.key/.pub: ${errorMessage(err)}`, undefined, { cause: err });
  }
  return { keyId: keyIdOf(publicKey), privateKeyPath, publicKeyPath };
}

function requireEd25519(key: KeyObject, where: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new SgmoeError('E_KEY_INVALID', `${where}: expected an ed25519 key, found ${key.asymmetricKeyType ?? 'a symmetric key'}`);
  }
  return key;
}

export async function readPrivateKey(path: string): Promise<KeyObject> {
  try {
    return requireEd25519(createPrivateKey(await readFile(path, 'utf8')), path);
  } catch (err) {
    if (err instanceof SgmoeError) throw err;
    throw new SgmoeError('E_KEY_INVALID', `${path}: expected an ed25519 private key in PEM, ${errorMessage(err)}`, undefined, { cause: err });
  }
}

export function parsePublicKey(pem: string, where = 'public key'): KeyObject {
  try {
    return requireEd25519(createPublicKey(pem), where);
  } catch (err) {
    if (err instanceof SgmoeError) throw err;
    throw new SgmoeError('E_KEY_INVALID', `${where}: expected an ed25519 public key in PEM, ${errorMessage(err)}`, undefined, { cause: err });
  }
}

export async function readPublicKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new SgmoeError('E_KEY_INVALID', `cannot read public key ${path} (a key pair comes from \`sgmoe model keygen NAME\`): ${errorMessage(err)}`, undefined, { cause: err });
  }
  return parsePublicKey(pem, path);
}

/** The public keys a device accepts package signatures from, by key id (from the device config). */
export class TrustedKeys {
  private readonly byId: Map<string, KeyObject>;

  constructor(keys: KeyObject[]) {
    this.byId = new Map(keys.map((k) => [keyIdOf(k), requireEd25519(k, 'trusted key')]));
  }

  static fromPem(pems: string[]): TrustedKeys {
    return new TrustedKeys(pems.map((pem, i) => parsePublicKey(pem, `trusted key ${i}`)));
  }

  get(keyId: string): KeyObject | undefined {
    return this.byId.get(keyId);
  }

  get ids(): string[] {
    return [...this.byId.keys()];
  }
}
