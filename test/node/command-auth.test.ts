import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents } from '../../src/audit/query';
import { signCommand } from '../../src/fleet/command-signature';
import { generateSigningKey, keyIdOf, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { sendCommand } from '../../src/fleet/remote-command';
import { signPackage } from '../../src/fleet/signature';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode, type CreatedNode } from '../../src/node/create';
import type { ReplyPayload } from '../../src/protocol/payloads';
import type { UpdateRequestInput } from '../../src/protocol/update';
import { Mosquitto } from '../helpers/mqtt';
import { logRequests, type RequestLog } from '../helpers/http-log';
import { BUNDLED } from '../helpers/package';
import { sgmoeAsync } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { variant } from '../fleet/support';

/**
 * A node on Debian's mosquitto, open to anonymous clients as a careless plant's broker would be: only commands in
 * an envelope signed by the operator's key, for this device, fresh and used once, may change what it runs.
 */
const tmp = tempDir('sgmoe-command-auth-');
const SITE = 'plant';
const DEVICE = 'cell-7';
let broker: Mosquitto;
let created: CreatedNode;
let running: Promise<void>;
let operator: mqtt.MqttClient;
let key: KeyObject;
let rogue: KeyObject;
let repo: RequestLog;
let upgrade: UpdateRequestInput;
let downgrade: UpdateRequestInput;
const camera = new PushSource('camera');

/** Publishes a raw command message as anyone on the broker could, and waits for the device's reply to its id. */
async function raw(command: string, message: Record<string, unknown>): Promise<ReplyPayload> {
  const replyTopic = `sgmoe/v1/${SITE}/${DEVICE}/cmd/${command}/reply`;
  await operator.subscribeAsync(replyTopic, { qos: 1 });
  const reply = new Promise<ReplyPayload>((resolve) => {
    const onMessage = (topic: string, payload: Buffer): void => {
      const parsed = JSON.parse(payload.toString()) as ReplyPayload;
      if (topic !== replyTopic || parsed.id !== message.id) return;
      operator.removeListener('message', onMessage);
      resolve(parsed);
    };
    operator.on('message', onMessage);
  });
  await operator.publishAsync(`sgmoe/v1/${SITE}/${DEVICE}/cmd/${command}`, JSON.stringify(message), { qos: 1 });
  return reply;
}

/** The operator's way: `sgmoe cmd` / `sgmoe model rollback` sign with the key and wait for the final reply. */
const signed = (command: string, args?: unknown, id?: string) =>
  sendCommand({ client: operator, site: SITE, device: DEVICE, command, args, key, correlationId: id, timeoutMs: 60_000 });

const engine = () => created.node.engine;

beforeAll(async () => {
  await generateSigningKey(join(tmp.path, 'operator'));
  await generateSigningKey(join(tmp.path, 'rogue'));
  key = await readPrivateKey(join(tmp.path, 'operator.key'));
  rogue = await readPrivateKey(join(tmp.path, 'rogue.key'));
  mkdirSync(join(tmp.path, 'repo'));
  repo = await logRequests(join(tmp.path, 'repo'));
  const offer = async (name: string, dir: string): Promise<UpdateRequestInput> => {
    const packed = await packPackage(dir, join(tmp.path, 'repo', `${name}.tar`));
    return { url: `${repo.url}${name}.tar`, sha256: packed.sha256, signature: await signPackage(packed.tar, key), version: packed.version };
  };
  upgrade = await offer('v1.1.0', variant(join(tmp.path, 'v1.1.0'), (m) => (m.version = '1.1.0')));
  // The operator really signed 1.0.0 once: a valid package signature, which must not be enough to go back to it.
  downgrade = { ...(await offer('v1.0.0', BUNDLED)), force: true };

  broker = await Mosquitto.create(tmp.path);
  await broker.start();
  const config = parseNodeConfig({
    model: BUNDLED,
    device: 'x86_64-cpu',
    threads: 1,
    // Credentials in URLs, as plants write them: none of them may leave the device.
    mqtt: { url: broker.url.replace('mqtt://', 'mqtt://line3:s3cret@'), site: SITE, device: DEVICE },
    sources: [{ uri: 'http://viewer:camPass@127.0.0.1:9/snapshot.jpg', intervalMs: 3_600_000 }],
    audit: { file: join(tmp.path, 'audit.db') },
    fleet: { root: join(tmp.path, 'device'), trustedKeys: [join(tmp.path, 'operator.pub')], watch: { windowMs: 200, intervalMs: 50 } },
  });
  created = await createEdgeNode(config, { extraSources: [{ source: camera, preprocess: {} }] });
  running = created.node.run();
  operator = await mqtt.connectAsync(broker.url, { clientId: 'anyone' });
  // The node answers once its cmd/# subscription is in place.
  for (let answered = false; !answered; ) {
    answered = await Promise.race([raw('ping', { id: `wait-${Date.now()}` }).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 500))]);
  }
});

afterAll(async () => {
  camera.end();
  await created?.node.stop();
  await running;
  await operator?.endAsync();
  await broker?.stop();
  await repo?.close();
  tmp.cleanup();
});

test('an anonymous set-threshold is refused with E_CMD_UNAUTHORISED and changes nothing', async () => {
  const before = engine().getSettings().threshold;
  const reply = await raw('set-threshold', { id: 'anon-t', args: { threshold: 0.1 } });
  expect(reply).toMatchObject({ ok: false, error: { code: 'E_CMD_UNAUTHORISED', message: expect.stringContaining('signed by a trusted operator key') } });
  expect(engine().getSettings().threshold).toBe(before);
});

test('ping and get-config stay open to anyone on the broker, and get-config shows no credential of any URL', async () => {
  expect(await raw('ping', { id: 'anon-ping' })).toMatchObject({ ok: true, data: { pong: true } });
  const config = await raw('get-config', { id: 'anon-config' });
  expect(config).toMatchObject({
    ok: true,
    data: { config: { mqtt: { url: expect.stringMatching(/^mqtt:\/\/\*\*\*@127\.0\.0\.1:/) }, sources: [{ uri: 'http://***@127.0.0.1:9/snapshot.jpg' }] } },
  });
  expect(JSON.stringify(config)).not.toMatch(/s3cret|camPass/);
  // The source is named after its URI, without the credentials: that name reaches the dashboard, metrics and audit rows.
  expect(created.node.snapshot().sources.map((s) => s.name)).toContain('http://***@127.0.0.1:9/snapshot.jpg');
});

test('the operator CLI signs with --key: `sgmoe cmd set-threshold` changes the device, without a key it refuses to send', async () => {
  const common = ['--broker', broker.url, '--site', SITE, '--device', DEVICE, '--args', '{"threshold":0.8}'];
  const signedRun = await sgmoeAsync('cmd', 'set-threshold', ...common, '--key', join(tmp.path, 'operator.key'));
  expect(signedRun.status).toBe(0);
  expect(JSON.parse(signedRun.stdout)).toMatchObject({ command: 'set-threshold', ok: true });
  expect(engine().getSettings().threshold).toBe(0.8);
  const unsigned = await sgmoeAsync('cmd', 'set-threshold', ...common.slice(0, -1), '{"threshold":0.3}');
  expect(unsigned.status).toBe(1);
  expect(unsigned.stderr).toContain('E_CMD_UNAUTHORISED');
  expect(engine().getSettings().threshold).toBe(0.8);
});

test('an authorised set-threshold changes the threshold; the same envelope replayed is refused with E_CMD_REPLAYED', async () => {
  const message = { id: 'set-1', envelope: signCommand({ command: 'set-threshold', site: SITE, device: DEVICE, id: 'set-1', args: { threshold: 0.5 } }, key) };
  // The reply as src/transport/README.md documents it: the engine's settings now in force.
  expect(await raw('set-threshold', message)).toMatchObject({ ok: true, data: { settings: { threshold: 0.5, topK: expect.any(Number), mode: 'moe' } } });
  expect(engine().getSettings().threshold).toBe(0.5);
  const before = engine().configure({ threshold: 0.6 }).threshold;
  expect(await raw('set-threshold', message)).toMatchObject({ ok: false, error: { code: 'E_CMD_REPLAYED' } });
  expect(engine().getSettings().threshold).toBe(before);
});

const envelopeFor = (target: { site?: string; device?: string; command?: string }, signer = () => key, now = new Date()) =>
  signCommand({ command: 'set-threshold', site: SITE, device: DEVICE, ...target, id: 'x-1', args: { threshold: 0.2 } }, signer(), now);

test.each([
  ['signed for another device', 'E_CMD_UNAUTHORISED', /device "cell-8"/, () => envelopeFor({ device: 'cell-8' })],
  ['signed for another site', 'E_CMD_UNAUTHORISED', /site "other"/, () => envelopeFor({ site: 'other' })],
  ['signed for another command', 'E_CMD_UNAUTHORISED', /command "ping"/, () => envelopeFor({ command: 'ping' })],
  ['signed an hour ago', 'E_CMD_STALE', /expected within 300 s/, () => envelopeFor({}, () => key, new Date(Date.now() - 3_600_000))],
  ['signed by a key the device does not trust', 'E_CMD_UNAUTHORISED', /expected one of the operator keys/, () => envelopeFor({}, () => rogue)],
])('an envelope %s is refused with %s and changes nothing', async (_what, code, message, envelope) => {
  const before = engine().getSettings().threshold;
  expect(await raw('set-threshold', { id: 'x-1', envelope: envelope() })).toMatchObject({ ok: false, error: { code, message: expect.stringMatching(message) } });
  expect(engine().getSettings().threshold).toBe(before);
});

test('an envelope whose args were changed after signing is refused', async () => {
  const envelope = signCommand({ command: 'set-threshold', site: SITE, device: DEVICE, id: 'x-2', args: { threshold: 0.2 } }, key);
  const tampered = { ...envelope, payload: envelope.payload.replace('0.2', '0.01') };
  expect(await raw('set-threshold', { id: 'x-2', envelope: tampered })).toMatchObject({ ok: false, error: { code: 'E_CMD_UNAUTHORISED' } });
});

test('an authorised update installs 1.1.0; then an anonymous forced downgrade to a validly signed 1.0.0 is refused before any download', async () => {
  expect(await signed('update', upgrade, 'upd-1')).toMatchObject({ ok: true, data: { step: 'done' } });
  expect(engine().model.version).toBe('1.1.0');

  const fetched = repo.requests.length;
  expect(await raw('update', { id: 'anon-down', args: downgrade })).toMatchObject({ ok: false, error: { code: 'E_CMD_UNAUTHORISED' } });
  expect(engine().model.version).toBe('1.1.0');
  expect(repo.requests.slice(fetched)).toEqual([]);
});

test('an anonymous rollback is refused; the operator\'s signed rollback goes back to 1.0.0', async () => {
  expect(await raw('rollback', { id: 'anon-rb' })).toMatchObject({ ok: false, error: { code: 'E_CMD_UNAUTHORISED' } });
  expect(engine().model.version).toBe('1.1.0');
  expect(await signed('rollback', undefined, 'rb-1')).toMatchObject({ ok: true, data: { from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0' } });
  expect(engine().model.version).toBe('1.0.0');
});

test('every accepted command is in the audit log with its request id and the key id that authorised it', async () => {
  const keyId = keyIdOf(key);
  const db = openAuditDbReadOnly(join(tmp.path, 'audit.db'));
  try {
    expect(listEvents(db, {}, ['config_changed'], 'set-1').map((e) => e.details)).toEqual([expect.objectContaining({ value: 0.5, correlationId: 'set-1', keyId })]);
    const update = listEvents(db, {}, undefined, 'upd-1');
    expect(update.map((e) => e.kind)).toEqual(expect.arrayContaining(['update_requested', 'model_updated', 'update_done']));
    expect(update.every((e) => e.details?.keyId === keyId)).toBe(true);
    expect(listEvents(db, {}, ['model_rolled_back'], 'rb-1').map((e) => e.details?.keyId)).toEqual([keyId]);
  } finally {
    db.close();
  }
});

test('every refused command is in the audit log with its code', async () => {
  const db = openAuditDbReadOnly(join(tmp.path, 'audit.db'));
  try {
    const refused = listEvents(db, {}, ['command_refused']).map((e) => [e.details?.command, e.details?.id, e.details?.code]);
    expect(refused).toEqual(
      expect.arrayContaining([
        ['set-threshold', 'anon-t', 'E_CMD_UNAUTHORISED'],
        ['set-threshold', 'set-1', 'E_CMD_REPLAYED'],
        ['update', 'anon-down', 'E_CMD_UNAUTHORISED'],
        ['rollback', 'anon-rb', 'E_CMD_UNAUTHORISED'],
      ]),
    );
    expect(refused.filter(([, , code]) => code === 'E_CMD_STALE')).toHaveLength(1);
  } finally {
    db.close();
  }
});
