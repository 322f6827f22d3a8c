import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { closeOperator, connectOperator } from '../../src/fleet/broker';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { sendCommand } from '../../src/fleet/remote-command';
import { signPackage, writeSignature } from '../../src/fleet/signature';
import { sgmoeAsync } from '../helpers/cli';
import { waitUntil } from '../helpers/mqtt';
import { copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { hotFolder, sampleNode, type SampleNode } from '../node/sample-node';
import { HoldingBroker } from './holding-broker';
import { ScriptedDevice } from './scripted-device';

/**
 * Whether a command reaches a device, and when: a target whose retained status says offline (truly, or by a stale
 * last will), and a command the broker or the operator's client still holds when the operator gives up on it.
 * Real nodes on an aedes that can hold publishes and connects, and the real `sgmoe` command.
 */
const SITE = 'plant-1';
const tmp = tempDir('sgmoe-command-reach-');
const keyPath = join(tmp.path, 'operator.key');
let broker: HoldingBroker;
let key: KeyObject;
let listener: MqttClient;
let tar: string;
const nodes: Record<string, { node: SampleNode; running: Promise<void> }> = {};
/** Every message on cell-1's command and reply topics, in arrival order. */
const seen: Array<{ topic: string; body: { id?: string; ok?: boolean; error?: { code: string } } }> = [];

async function startNode(device: string): Promise<{ node: SampleNode; running: Promise<void> }> {
  const dir = join(tmp.path, device);
  const node = await sampleNode({
    sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 2)}` }],
    mqtt: { url: broker.url, site: SITE, device },
    audit: { file: join(dir, 'audit.db') },
    once: false,
    healthIntervalMs: 200,
    fleet: { root: join(dir, 'fleet'), trustedKeys: [join(tmp.path, 'operator.pub')] },
  });
  const decided = new Promise<void>((resolve) => {
    let n = 0;
    node.node.on('decision', () => ++n === 2 && resolve());
  });
  const running = node.node.run();
  await decided;
  return (nodes[device] = { node, running });
}

const remote = (device: string, ...flags: string[]) => ['--broker', broker.url, '--site', SITE, '--device', device, '--key', keyPath, ...flags];
const topic = (device: string, rest: string) => `sgmoe/v1/${SITE}/${device}/${rest}`;
const requestIds = () => seen.filter((m) => m.topic === topic('cell-1', 'cmd/set-threshold')).map((m) => m.body.id);
const replyTo = (id: string) => seen.find((m) => m.topic === topic('cell-1', 'cmd/set-threshold/reply') && m.body.id === id)?.body;

beforeAll(async () => {
  broker = await HoldingBroker.start();
  await generateSigningKey(join(tmp.path, 'operator'));
  key = await readPrivateKey(keyPath);
  const packed = await packPackage(copyPackage(join(tmp.path, 'pkg')), join(tmp.path, 'pkg.tar'));
  await writeSignature(packed.tar, await signPackage(packed.tar, key));
  tar = packed.tar;
  await startNode('cell-1');
  const stopped = await startNode('cell-2');
  await stopped.node.node.stop();
  await stopped.running;
  listener = await connectAsync(broker.url, { clientId: 'command-reach-listener' });
  listener.on('message', (t, payload) => payload.length > 0 && seen.push({ topic: t, body: JSON.parse(payload.toString('utf8')) }));
  await listener.subscribeAsync(topic('cell-1', 'cmd/#'), { qos: 1 });
}, 120_000);

afterAll(async () => {
  await listener?.endAsync();
  const running = nodes['cell-1'];
  if (running) {
    await running.node.node.stop();
    await running.running;
  }
  await broker?.stop();
  tmp.cleanup();
});

test('cmd and rollback over MQTT refuse at once a device whose retained status says offline, as publish does (E_DEVICE_OFFLINE)', async () => {
  for (const command of [['cmd', 'set-threshold', '--args', '{"threshold":0.9}'], ['model', 'rollback']]) {
    const run = await sgmoeAsync(...command, ...remote('cell-2', '--timeout', '10'));
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/E_DEVICE_OFFLINE: offline by its retained status: cell-2 \(shutdown, last seen \S+\)\. A command is not kept for an offline device/);
    expect(run.stderr).toContain('--ignore-offline-status');
  }
});

test('a command that reaches the device after its signed deadline is refused there (E_CMD_EXPIRED) and changes nothing, though it was signed and fresh', async () => {
  const threshold = nodes['cell-1'].node.node.engine.getSettings().threshold;
  // The broker takes the command and stalls with it: the operator gets no answer and gives up.
  broker.holdPublishesTo(topic('cell-1', 'cmd/set-threshold'));
  const run = await sgmoeAsync('cmd', 'set-threshold', '--args', '{"threshold":0.5}', ...remote('cell-1', '--timeout', '2', '--id', 'late-1'));
  expect(run.status).toBe(1);
  expect(run.stderr).toContain('E_CMD_TIMEOUT');
  expect(broker.held).toHaveLength(1);
  broker.holdPublishesTo(null);
  await broker.deliverHeld();
  await waitUntil(() => replyTo('late-1') !== undefined, 30_000, "the device's reply to the late command");
  expect(replyTo('late-1')).toMatchObject({ ok: false, error: { code: 'E_CMD_EXPIRED' } });
  expect(nodes['cell-1'].node.node.engine.getSettings().threshold).toBe(threshold);
});

test('a command given up on while the broker connection is down is withdrawn: the reconnect does not send it late', async () => {
  const operator = await connectOperator(broker.url, 'command-reach-withdraw');
  try {
    broker.holdPublishesTo(topic('cell-1', 'cmd/set-threshold'));
    const sending = sendCommand({ client: operator, site: SITE, device: 'cell-1', command: 'set-threshold', args: { threshold: 0.5 }, key, correlationId: 'given-up', timeoutMs: 1500 });
    await waitUntil(() => broker.held.length === 1, 10_000, 'the command at the broker');
    // The connection drops before the broker acknowledged (or kept) it: mqtt.js holds it, to send it again once back.
    broker.held.splice(0);
    broker.holdPublishesTo(null);
    broker.holdConnectsOf('command-reach-withdraw');
    operator.stream.destroy();
    await expect(sending).rejects.toMatchObject({ code: 'E_CMD_TIMEOUT', message: expect.stringMatching(/\(id given-up\) within 1\.5 s$/) });
    const back = new Promise((resolve) => operator.once('connect', resolve));
    broker.admitConnects();
    await back;
    // Sent after the reconnect, so behind anything the client sent again on it.
    await operator.publishAsync(topic('cell-1', 'cmd/set-threshold'), JSON.stringify({ id: 'after-reconnect' }), { qos: 1 });
    await waitUntil(() => requestIds().includes('after-reconnect'), 10_000, 'the request sent after the reconnect');
    expect(requestIds()).not.toContain('given-up');
  } finally {
    await closeOperator(operator);
  }
});

test('--ignore-offline-status sends to a device whose retained status is a stale last will, and waits for its answer: cmd, rollback and publish', async () => {
  const status = await retained(topic('cell-1', 'status'));
  // As a broker may do: an old session's last will, published after the device's new online status.
  const staleWill = (s: Record<string, unknown>) => JSON.stringify({ ...s, state: 'offline', reason: 'lost', willSetAt: s.ts });
  await listener.publishAsync(topic('cell-1', 'status'), staleWill(status), { qos: 1, retain: true });
  const scripted = await ScriptedDevice.start(broker.url, SITE, 'cell-3', { model: { name: 'fashion-sgmoe', version: '0.9.0' } }, async (id, device) => {
    await device.progress(id, 'requested', '1.0.0');
    await device.done(id, '1.0.0');
  });
  await scripted.status('offline', scripted.info);
  try {
    const refused = await sgmoeAsync('cmd', 'ping', ...remote('cell-1'));
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('E_DEVICE_OFFLINE');

    const ping = await sgmoeAsync('cmd', 'ping', ...remote('cell-1', '--ignore-offline-status'));
    expect(ping.status).toBe(0);
    expect(JSON.parse(ping.stdout.trim())).toMatchObject({ ok: true, data: { pong: true } });

    // The device answers: it has no earlier package to go back to.
    const rollback = await sgmoeAsync('model', 'rollback', ...remote('cell-1', '--ignore-offline-status'));
    expect(rollback.status).toBe(2);
    expect(JSON.parse(rollback.stdout.trim())).toMatchObject({ ok: false, error: { code: 'E_ROLLBACK_NONE' } });

    const publish = await sgmoeAsync('model', 'publish', tar, ...remote('cell-3', '--ignore-offline-status', '--url', 'http://127.0.0.1:9/pkg.tar', '--timeout', '30'));
    expect(publish.status).toBe(0);
    expect(publish.stdout).toMatch(/cell-3 +done +1\.0\.0/);
    expect(scripted.received).toBe(1);
  } finally {
    await listener.publishAsync(topic('cell-1', 'status'), JSON.stringify(status), { qos: 1, retain: true });
    await scripted.close();
  }
});

/** The retained message of `t`, read by a client of its own. */
async function retained(t: string): Promise<Record<string, unknown>> {
  const client = await connectAsync(broker.url, { clientId: 'command-reach-retained' });
  try {
    const message = new Promise<Buffer>((resolve) => client.on('message', (_t, payload) => resolve(payload)));
    await client.subscribeAsync(t, { qos: 1 });
    return JSON.parse((await message).toString('utf8'));
  } finally {
    await client.endAsync();
  }
}
