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
  /** The latest arrival the operator waits for (`commandExpiry`); only for a device that checks it (`ENVELOPE_FIELDS`). */
  expires?: Date;
}

/**
 * How much sooner than the operator stops waiting a command must reach the device. The device checks `expires` by
 * its own clock, so this is the skew allowed between the two clocks (NTP keeps them within milliseconds; 5 s also
 * covers a device that lost its time source for a few days), and it leaves the device time to answer before the
 * operator gives up. Waits shorter than 10 s keep their first half for the arrival.
 */
const EXPIRY_MARGIN_MS = 5_000;

/** The signed deadline of a command the operator waits `waitMs` for from `sentAt`: one arriving later is refused. */
export function commandExpiry(sentAt: number, waitMs: number): Date {
  return new Date(sentAt + waitMs - Math.min(EXPIRY_MARGIN_MS, waitMs / 2));
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
    ...(command.expires === undefined ? {} : { expires: command.expires.toISOString() }),
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
