import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { connectOperator } from '../../src/fleet/broker';
import { readInventory } from '../../src/fleet/inventory';
import { formatInventory } from '../../src/cli/commands/fleet';
import { SDK_VERSION } from '../../src/version';
import { DEFAULT_TOPIC_PREFIX, HEALTH_SCHEMA, STATUS_SCHEMA } from '../../src/protocol';
import { Mosquitto, waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { freePort } from '../helpers/net';
import { hotFolder, sampleNode } from '../node/sample-node';
import { ROOT, sgmoe } from '../helpers/cli';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';

const tmp = tempDir('sgmoe-inventory-');
let broker: Mosquitto;

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await broker.start();
});
afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

/** A real node on the bundled model that keeps running (no --once) until the test stops it. */
async function runningNode(device: string) {
  const dir = join(tmp.path, device);
  const created = await sampleNode({
    sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 2)}` }],
    mqtt: { url: broker.url, site: 'plant-1', device },
    audit: { file: join(dir, 'audit.db') },
    once: false,
    healthIntervalMs: 100,
  });
  const decided = new Promise<void>((resolve) => {
    let n = 0;
    created.node.on('decision', () => ++n === 2 && resolve());
  });
  const running = created.node.run();
  await decided;
  return { ...created, running };
}

it('fleet status lists every node of the site with its version and online state, and a cleanly stopped one as offline', async () => {
  const a = await runningNode('cell-1');
  const b = await runningNode('cell-2');
  // A health report of cell-2 is retained before it stops.
  const listening = await connectOperator(broker.url, 'inventory-cell-2');
  let reported = false;
  listening.on('message', () => (reported = true));
  await listening.subscribeAsync('sgmoe/v1/plant-1/cell-2/health', { qos: 1 });
  await waitUntil(() => reported, 10_000, 'a health report of cell-2');
  await listening.endAsync();
  await b.node.stop();
  await b.running;

  const operator = await connectOperator(broker.url, 'inventory-test');
  try {
    const { inventory, stop } = await readInventory(operator, { site: 'plant-1', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    // The SDK release each runs, beside its model: a fleet-wide SDK upgrade can be checked.
    expect(inventory.devices.map((d) => [d.device, d.state, d.reason, d.version, d.sdk])).toEqual([
      ['cell-1', 'online', null, a.node.engine.model.version, SDK_VERSION],
      ['cell-2', 'offline', 'shutdown', a.node.engine.model.version, SDK_VERSION],
    ]);
    expect(formatInventory(inventory).split('\n')[1]).toMatch(new RegExp(`^cell-1 +online .* fashion-sgmoe [\\d.]+ +${SDK_VERSION.replace(/\./g, '\\.')} `));
    // The stopped one's retained health is history: no frames/s or alarms shown as if now.
    expect(inventory.devices.find((d) => d.device === 'cell-2')).toMatchObject({ framesPerSecond: null, alarms: [] });
    expect(inventory.devices.every((d) => d.lastSeen !== null)).toBe(true);

    const other = await readInventory(operator, { site: 'plant-9', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await other.stop();
    expect(other.inventory.devices).toEqual([]);
  } finally {
    await operator.endAsync();
    await a.node.stop();
    await a.running;
  }
});

it('a one-shot fleet status shows frames/s and last seen from the retained health, not from the birth status', async () => {
  const a = await runningNode('cell-4');
  // A health report that went out after the frames were decided, seen by a client that was listening.
  const listening = await connectOperator(broker.url, 'inventory-health');
  const reports: { ts: string }[] = [];
  listening.on('message', (_topic, payload) => reports.push(JSON.parse(payload.toString())));
  await listening.subscribeAsync('sgmoe/v1/plant-1/cell-4/health', { qos: 1 });
  await waitUntil(() => reports.length > 0, 10_000, 'a health report');
  await listening.endAsync();

  // A later operator, as `sgmoe fleet status` is: it gets only what the broker retained.
  const operator = await connectOperator(broker.url, 'inventory-one-shot');
  try {
    const { inventory, stop } = await readInventory(operator, { site: 'plant-1', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    const entry = inventory.devices.find((d) => d.device === 'cell-4')!;
    expect(entry.state).toBe('online');
    expect(entry.framesPerSecond).toEqual(expect.any(Number));
    // At least as recent as that report (a later one may have come since), so later than the birth status.
    expect(entry.lastSeen! >= reports[0].ts).toBe(true);
  } finally {
    await operator.endAsync();
    await a.node.stop();
    await a.running;
  }
});

it('operator broker typos and unreachable brokers get their own codes, never an internal error', async () => {
  await expect(connectOperator(undefined, 'x')).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('--broker') });
  await expect(connectOperator('mqtt//127.0.0.1:1883', 'x')).rejects.toMatchObject({ code: 'E_BROKER_URL' });
  await expect(connectOperator('127.0.0.1:1883', 'x')).rejects.toMatchObject({ code: 'E_BROKER_URL' });
  const closed = await freePort();
  await expect(connectOperator(`mqtt://127.0.0.1:${closed}`, 'x')).rejects.toMatchObject({
    code: 'E_MQTT_UNREACHABLE',
    message: expect.stringContaining('nothing listens there'),
  });
  // The broker itself answers a plain client, so the refusal above was about the port, not this machine.
  const plain = await connectAsync(broker.url, { clientId: 'plain' });
  await plain.endAsync();
});

it('sgmoe cmd to a device that never reported fails at once, naming the devices that did', async () => {
  const a = await runningNode('cell-7');
  try {
    const run = sgmoe('cmd', 'ping', '--broker', broker.url, '--site', 'plant-1', '--device', 'cell-9');
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('E_DEVICE_UNKNOWN');
    expect(run.stderr).toMatch(/no device cell-9 has ever reported on site plant-1.*cell-7/);
  } finally {
    await a.node.stop();
    await a.running;
  }
});

it("a machine's condition alarm reaches fleet status through the retained health report", async () => {
  const dir = join(tmp.path, 'pdm-1');
  const inbox = join(dir, 'inbox');
  mkdirSync(inbox, { recursive: true });
  const bearing = join(ROOT, 'models', 'bearing-sgmoe');
  const inner = readdirSync(join(bearing, 'samples')).find((f) => f.endsWith('-inner.wav'))!;
  for (const name of ['a.wav', 'b.wav']) copyFileSync(join(bearing, 'samples', inner), join(inbox, name));
  const config = parseNodeConfig({
    model: bearing,
    threads: 1,
    sources: [{ uri: `dir:${inbox}`, name: 'press-7' }],
    mqtt: { url: broker.url, site: 'plant-1', device: 'pdm-1' },
    conditionAlarms: { windows: 2 },
    healthIntervalMs: 100,
  });
  const { node } = await createEdgeNode(config);
  const running = node.run();
  const listening = await connectOperator(broker.url, 'inventory-condition');
  let raised = false;
  listening.on('message', (_topic, payload) => {
    const alarms = (JSON.parse(payload.toString()) as { routing?: { conditionAlarms?: unknown[] } }).routing?.conditionAlarms ?? [];
    raised ||= alarms.length > 0;
  });
  await listening.subscribeAsync('sgmoe/v1/plant-1/pdm-1/health', { qos: 1 });
  await waitUntil(() => raised, 30_000, 'a health report with the condition alarm');
  await listening.endAsync();

  const operator = await connectOperator(broker.url, 'inventory-condition-one-shot');
  try {
    const { inventory, stop } = await readInventory(operator, { site: 'plant-1', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    expect(inventory.devices.find((d) => d.device === 'pdm-1')?.alarms).toContain('condition_change (press-7)');
  } finally {
    await operator.endAsync();
    await node.stop();
    await running;
  }
});

it("a lost device shows the model of its latest health report, not the one of its last will, and its update state is marked as at connect", async () => {
  const device = 'cell-lost';
  const prefix = `sgmoe/v1/plant-1/${device}/`;
  const status = (state: 'online' | 'offline', reason: string, info: Record<string, unknown>, ts = new Date().toISOString()) =>
    JSON.stringify({ schema: STATUS_SCHEMA, state, reason, ts, site: 'plant-1', device, clientId: device, ...(reason === 'lost' ? { willSetAt: ts } : {}), info });
  // As the node: its last will is written at connect, with the model and the last update of that moment.
  const atConnect = { model: { name: 'fashion-sgmoe', version: '1.0.0' }, lastUpdate: { outcome: 'done', version: '1.0.0', correlationId: 'CHG-0', ts: new Date().toISOString() } };
  const node = await connectAsync(broker.url, { clientId: device, will: { topic: `${prefix}status`, payload: Buffer.from(status('offline', 'lost', atConnect)), qos: 1, retain: true } });
  const watcher = await connectOperator(broker.url, 'inventory-lost-watcher');
  let lost = false;
  watcher.on('message', (_topic, payload) => (lost ||= payload.length > 0 && JSON.parse(payload.toString()).reason === 'lost'));
  try {
    // Then it updates to 1.1.0: its status and its (retained) health say so, and it is killed; the broker publishes the will.
    const now = { model: { name: 'fashion-sgmoe', version: '1.1.0' }, lastUpdate: { outcome: 'done', version: '1.1.0', correlationId: 'CHG-1', ts: new Date().toISOString() } };
    await node.publishAsync(`${prefix}status`, status('online', 'connected', now), { qos: 1, retain: true });
    const health = { schema: HEALTH_SCHEMA, ts: new Date(Date.now() + 1).toISOString(), uptimeS: 60, outbox: { pending: 0, queued: 0, sent: 0, dropped: 0 }, counters: {}, routing: { model: now.model, framesPerSecond: 2 } };
    await node.publishAsync(`${prefix}health`, JSON.stringify(health), { qos: 1, retain: true });
    await watcher.subscribeAsync(`${prefix}status`, { qos: 1 });
    await new Promise<void>((resolve) => node.end(true, {}, () => resolve()));
    await waitUntil(() => lost, 10_000, `the last will of ${device}`);

    const { inventory, stop } = await readInventory(watcher, { site: 'plant-1', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    expect(inventory.devices.find((d) => d.device === device)).toMatchObject({ state: 'offline', reason: 'lost', model: 'fashion-sgmoe', version: '1.1.0', update: 'last: done 1.0.0 (at connect)' });
    expect(formatInventory(inventory)).toMatch(new RegExp(`\\n${device} +offline \\(lost\\) +\\S+ +fashion-sgmoe 1\\.1\\.0 .*last: done 1\\.0\\.0 \\(at connect\\)`));
  } finally {
    await watcher.publishAsync(`${prefix}status`, '', { qos: 1, retain: true });
    await watcher.publishAsync(`${prefix}health`, '', { qos: 1, retain: true });
    await watcher.endAsync();
  }
});
