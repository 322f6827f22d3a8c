import { randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { SgmoeError, errorMessage } from '../errors';
import { COMMAND_FORMAT, signedCommandSchema, type CommandEnvelope, type SignedCommand } from '../protocol/command';
import { keyIdOf, type TrustedKeys } from './keys';
import { describeIssues } from '../validate';

/** What is signed: the payload text, prefixed with the format so no other signature of the key can pass for it. */
function signedBytes(payload: string): Buffer {
  return Buffer.from(`${COMMAND_FORMAT}\n${payload}`, 'utf8');
}

export interface CommandToSign {
  command: string;
  site: string;
  device: string;
  id: string;
  args?: unknown;
}

/** The operator's side: one envelope per device, fresh (`now`) and used once (a random nonce). */
export function signCommand(command: CommandToSign, privateKey: KeyObject, now: Date = new Date()): CommandEnvelope {
  const signed: SignedCommand = {
    format: COMMAND_FORMAT,
    command: command.command,
    site: command.site,
    device: command.device,
    id: command.id,
    ts: now.toISOString(),
    nonce: randomBytes(16).toString('hex'),
    ...(command.args === undefined ? {} : { args: command.args }),
  };
  const payload = JSON.stringify(signed);
  return { keyId: keyIdOf(privateKey), algorithm: 'ed25519', payload, signature: sign(null, signedBytes(payload), privateKey).toString('base64') };
}

/**
 * The device's side: the signature holds under a trusted key, then the payload is read. Anything else is
 * E_CMD_UNAUTHORISED (whether it arrived on the right device, in time and once is the caller's to check).
 */
export function openCommand(envelope: CommandEnvelope, trusted: TrustedKeys): { command: SignedCommand; keyId: string } {
  const key = trusted.get(envelope.keyId);
  if (!key) {
    throw new SgmoeError('E_CMD_UNAUTHORISED', `the command is signed by key ${envelope.keyId}: expected one of the operator keys this device trusts [${trusted.ids.join(', ')}]`, {
      keyId: envelope.keyId,
    });
  }
  if (!verify(null, signedBytes(envelope.payload), key, Buffer.from(envelope.signature, 'base64'))) {
    throw new SgmoeError('E_CMD_UNAUTHORISED', `the command's signature by key ${envelope.keyId} does not verify over its payload`, { keyId: envelope.keyId });
  }
  let json: unknown;
  try {
    json = JSON.parse(envelope.payload);
  } catch (err) {
    throw new SgmoeError('E_CMD_UNAUTHORISED', `the signed payload is not JSON: ${errorMessage(err)}`);
  }
  const parsed = signedCommandSchema.safeParse(json);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new SgmoeError('E_CMD_UNAUTHORISED', `the signed payload is not a ${COMMAND_FORMAT} command: ${problems.join('; ')}`, { problems });
  }
  return { command: parsed.data, keyId: envelope.keyId };
}
