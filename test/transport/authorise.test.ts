import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { signCommand } from '../../src/fleet/command-signature';
import { generateSigningKey, readPrivateKey, readPublicKey, TrustedKeys } from '../../src/fleet/keys';
import { CommandAuthoriser } from '../../src/transport/authorise';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-authorise-');
const WINDOW = 300_000;
let key: KeyObject;
let trusted: TrustedKeys;
let clock = Date.parse('2026-12-02T12:00:00Z');

beforeAll(async () => {
  await generateSigningKey(join(tmp.path, 'operator'));
  key = await readPrivateKey(join(tmp.path, 'operator.key'));
  trusted = new TrustedKeys([await readPublicKey(join(tmp.path, 'operator.pub'))]);
});
afterAll(() => tmp.cleanup());

const authoriser = (nonceFile?: string, keys: TrustedKeys | null = trusted) =>
  new CommandAuthoriser({ keys, site: 's', device: 'd', windowMs: WINDOW, nonceFile, now: () => clock });
const envelope = (id: string, at = clock) => signCommand({ command: 'rollback', site: 's', device: 'd', id }, key, new Date(at));

test('a node that trusts no operator key refuses every state-changing command, and says so', async () => {
  await expect(authoriser(undefined, null).authorise('rollback', 'r-0', envelope('r-0'))).rejects.toMatchObject({
    code: 'E_CMD_UNAUTHORISED',
    message: expect.stringContaining('trusts no operator key'),
  });
});

test('a replay is refused after a restart too: the nonces seen within the window are kept in a file', async () => {
  const file = join(tmp.path, 'nonces.json');
  const message = envelope('r-1');
  await expect(authoriser(file).authorise('rollback', 'r-1', message)).resolves.toMatchObject({ keyId: message.keyId });
  await expect(authoriser(file).authorise('rollback', 'r-1', message)).rejects.toMatchObject({ code: 'E_CMD_REPLAYED' });
});

test('an envelope is fresh within the window either side of the device clock, and its nonce is forgotten once it could not be fresh', async () => {
  const auth = authoriser();
  await expect(auth.authorise('rollback', 'early', envelope('early', clock + WINDOW - 1000))).resolves.toBeDefined();
  await expect(auth.authorise('rollback', 'late', envelope('late', clock - WINDOW - 1000))).rejects.toMatchObject({ code: 'E_CMD_STALE' });
  const old = envelope('old', clock - WINDOW + 1000);
  await expect(auth.authorise('rollback', 'old', old)).resolves.toBeDefined();
  clock += 2000;
  // Now stale rather than replayed: the window, not the nonce memory, refuses it.
  await expect(auth.authorise('rollback', 'old', old)).rejects.toMatchObject({ code: 'E_CMD_STALE' });
});

test('an envelope signed for another correlation id than the request carries is refused', async () => {
  await expect(authoriser().authorise('rollback', 'other-id', envelope('r-2'))).rejects.toMatchObject({ code: 'E_CMD_UNAUTHORISED', message: expect.stringContaining('id "r-2"') });
});
