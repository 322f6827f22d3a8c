import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { Engine } from '../../src/engine/engine';
import { UpdateAgent } from '../../src/fleet/agent';
import { fetchChunks, publishChunks } from '../../src/fleet/chunks';
import { SerialEngineHost } from './serial-host';
import { generateSigningKey, readPrivateKey, readPublicKey, TrustedKeys } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { publishUpdate } from '../../src/fleet/publish';
import { PROGRESS_STEPS, type UpdateRequestInput } from '../../src/protocol/update';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { signPackage } from '../../src/fleet/signature';
import { PackageStore } from '../../src/fleet/store';
import { EmbeddedBroker } from '../../src/transport/broker';
import { topicsFor } from '../../src/protocol/topics';
import { HEALTH_SCHEMA, REPLY_SCHEMA, STATUS_SCHEMA, type ReplyPayload } from '../../src/protocol/payloads';
import { CommandDispatcher } from '../../src/transport/commands';
import { CommandAuthoriser } from '../../src/transport/authorise';
import { copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { auditedHost, goldenInputs, streamFrames, variant } from './support';
import { ScriptedDevice } from './scripted-device';

const SITE = 'plant-1';
const ENGINE = { threads: { intraOp: 1 }, warmup: false };
const tmp = tempDir('sgmoe-fleet-publish-');
const broker = new EmbeddedBroker();
let server: PackageServer;
let trusted: TrustedKeys;
let operatorKey: KeyObject;
let v1: string;
let inputs: Float32Array[];
const packed: Record<string, { tar: string; request: Omit<UpdateRequestInput, 'url' | 'chunks'> }> = {};

/**
 * A device as the node will wire it: its agent answers `cmd/update` with each step on `cmd/update/reply`, it
 * publishes `health` every 100 ms, and frames keep flowing through its engine host.
 */
class Device {
  received = 0;
  private constructor(
    readonly id: string,
    readonly host: SerialEngineHost,
    private readonly stop: () => Promise<void>,
  ) {}

  static async start(id: string): Promise<Device> {
    const root = join(tmp.path, id);
    const store = new PackageStore(root);
    await store.adopt(v1);
    const engine = await Engine.load((await store.currentDir())!, ENGINE);
    const { audit, host, probe } = auditedHost(root, engine);
    const client = await connectAsync(broker.url, { clientId: id });
    const topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site: SITE, device: id });
    const reply = (body: ReplyPayload): void => void client.publishAsync(topics.reply('update'), JSON.stringify(body), { qos: 1 });
    const status = (): void =>
      void client.publishAsync(topics.status, JSON.stringify({ schema: STATUS_SCHEMA, state: 'online', reason: 'connected', ts: new Date().toISOString(), site: SITE, device: id, clientId: id, info: { model: host.engine.model } }), { qos: 1, retain: true });
    const agent = new UpdateAgent({
      store,
      host,
      probe,
      trustedKeys: trusted,
      engine: ENGINE,
      watch: { windowMs: 1000, intervalMs: 100, minFrames: 5, minRouted: 20, maxDrift: 0.6 },
      fetchChunks: (ref, dest, limits) => fetchChunks(client, ref, dest, limits.downloadTimeoutMs),
      onEvent: (e) => {
        if (e.model) audit.modelChanged(e.step === 'rolled_back' ? 'model_rolled_back' : 'model_updated', e.model);
        // As the node: every step republishes the retained status with the model running now, before any reply.
        status();
        // As the node: steps that are not final are progress; the command's own answer is the one final reply.
        if (e.correlationId && PROGRESS_STEPS.has(e.step)) reply({ schema: REPLY_SCHEMA, id: e.correlationId, command: 'update', ts: e.ts, ok: true, progress: true, data: e });
      },
    });
    // The node's own dispatcher and authoriser: the update arrives in an envelope signed for this device.
    const commands = new CommandDispatcher({
      handlers: { ping: () => null, getConfig: () => null, setThreshold: () => null, update: (request, correlationId) => agent.update(request, correlationId) },
      maxPayloadBytes: 65536,
      authoriser: new CommandAuthoriser({ keys: trusted, site: SITE, device: id, windowMs: 60_000 }),
    });
    const now = () => new Date().toISOString();
    status();
    const health = setInterval(
      () => void client.publishAsync(topics.health, JSON.stringify({ schema: HEALTH_SCHEMA, ts: now(), uptimeS: 1, outbox: { pending: 0, queued: 0, sent: 0, dropped: 0 }, counters: host.sample() })),
      100,
    );
    const frames = streamFrames((t, f) => host.infer(t, f), inputs);
    const device = new Device(id, host, async () => {
      clearInterval(health);
      await frames.stop();
      await client.endAsync();
      audit.close();
      await host.engine.dispose();
    });
    await client.subscribeAsync(topics.command('update'), { qos: 1 });
    client.on('message', (topic, payload) => {
      if (topic !== topics.command('update')) return;
      device.received += 1;
      void commands.handle('update', payload).then(reply);
    });
    return device;
  }

  close(): Promise<void> {
    return this.stop();
  }
}

beforeAll(async () => {
  await broker.start();
  const pub = join(tmp.path, 'pub');
  mkdirSync(pub);
  server = await servePackages(pub);
  await generateSigningKey(join(tmp.path, 'fleet'));
  trusted = new TrustedKeys([await readPublicKey(join(tmp.path, 'fleet.pub'))]);
  v1 = copyPackage(join(tmp.path, 'v1'));
  inputs = await goldenInputs(v1);
  const key = (operatorKey = await readPrivateKey(join(tmp.path, 'fleet.key')));
  for (const [name, edit] of Object.entries({
    v2: (m: { version: string }) => (m.version = '1.1.0'),
    drifting: (m: { version: string; routing: { earlyExit: { threshold: number } }; calibration: { expertShare: number[] } }) => {
      m.version = '1.2.0';
      m.routing.earlyExit.threshold = 1.000001;
      m.calibration.expertShare = m.calibration.expertShare.map((_, e) => (e === 0 ? 1 : 0));
    },
  })) {
    const p = await packPackage(variant(join(tmp.path, name), edit as never), join(pub, `${name}.tar`));
    packed[name] = { tar: p.tar, request: { sha256: p.sha256, signature: await signPackage(p.tar, key), version: p.version } };
  }
});

afterAll(async () => {
  await server?.close();
  await broker.stop();
  tmp.cleanup();
});

test('canary rollout over MQTT chunks: the canary updates and stays healthy, then the rest follow', async () => {
  const devices = await Promise.all(['canary-a', 'line-b', 'line-c'].map((id) => Device.start(id)));
  const operator = await connectAsync(broker.url, { clientId: 'operator-1' });
  try {
    const chunks = await publishChunks(operator, packed.v2.tar, `sgmoe/v1/${SITE}/packages/${packed.v2.request.sha256}`, 512 * 1024);
    expect(chunks.count).toBeGreaterThan(1);
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['canary-a', 'line-b', 'line-c'],
      canary: ['canary-a'],
      request: { ...packed.v2.request, chunks },
      key: operatorKey,
      correlationId: 'rollout-1',
      replyTimeoutMs: 60_000,
      canaryWindowMs: 500,
    });
    const done = (device: string) => ({ device, outcome: 'done', version: '1.1.0', durationMs: expect.any(Number), code: null, reason: null, lastStep: 'watching' });
    expect(report).toEqual({
      correlationId: 'rollout-1',
      canary: { ok: true, devices: [done('canary-a')] },
      devices: [done('line-b'), done('line-c')],
      ok: true,
    });
    expect(devices.map((d) => d.host.engine.model.version)).toEqual(['1.1.0', '1.1.0', '1.1.0']);
  } finally {
    await operator.endAsync();
    for (const d of devices) await d.close();
  }
});

test('a canary that rolls back stops the rollout: the other devices never get the command', async () => {
  const devices = await Promise.all(['canary-x', 'line-y'].map((id) => Device.start(id)));
  const operator = await connectAsync(broker.url, { clientId: 'operator-2' });
  try {
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['canary-x', 'line-y'],
      canary: ['canary-x'],
      request: { ...packed.drifting.request, url: `${server.url}drifting.tar` },
      key: operatorKey,
      replyTimeoutMs: 60_000,
      canaryWindowMs: 500,
    });
    expect(report.ok).toBe(false);
    expect(report.canary?.devices).toEqual([
      { device: 'canary-x', outcome: 'failed', version: '1.0.0', durationMs: expect.any(Number), code: 'E_HEALTH_REGRESSION', reason: expect.stringContaining('rolled back'), lastStep: 'watching' },
    ]);
    expect(report.devices).toEqual([expect.objectContaining({ device: 'line-y', outcome: 'skipped' })]);
    expect(devices.map((d) => [d.host.engine.model.version, d.received])).toEqual([
      ['1.0.0', 1],
      ['1.0.0', 0],
    ]);
  } finally {
    await operator.endAsync();
    for (const d of devices) await d.close();
  }
});

test('a device whose final reply never comes (it restarted mid-update) is told by its retained status, not reported as a timeout', async () => {
  const id = 'restarting';
  const device = await connectAsync(broker.url, { clientId: id });
  const operator = await connectAsync(broker.url, { clientId: 'operator-3' });
  const topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site: SITE, device: id });
  const status = (info: Record<string, unknown>) =>
    device.publishAsync(topics.status, JSON.stringify({ schema: STATUS_SCHEMA, state: 'online', reason: 'connected', ts: new Date().toISOString(), site: SITE, device: id, clientId: id, info }), { qos: 1, retain: true });
  const model = { name: 'fashion-sgmoe', version: '1.0.0' };
  try {
    await status({ model, fleet: { watchWindowMs: 1000 } });
    await device.subscribeAsync(topics.command('update'), { qos: 1 });
    // It starts the update, then comes back from a restart that undid it: its status says so, no reply does.
    device.on('message', (_topic, payload) => {
      const correlationId = JSON.parse(payload.toString()).id as string;
      const progress = (step: string) => ({ schema: REPLY_SCHEMA, id: correlationId, command: 'update', ts: new Date().toISOString(), ok: true, progress: true, data: { correlationId, step, version: '1.1.0', message: step, ts: new Date().toISOString() } });
      void (async () => {
        for (const step of ['requested', 'downloading']) await device.publishAsync(topics.reply('update'), JSON.stringify(progress(step)), { qos: 1 });
        const error = { code: 'E_UPDATE_INTERRUPTED', message: 'the device restarted during the update: the previous package runs' };
        await status({ model, fleet: { watchWindowMs: 1000 }, lastUpdate: { outcome: 'failed', version: '1.1.0', correlationId, error, at: 'downloading', ts: new Date().toISOString() } });
      })();
    });
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: [id],
      request: { ...packed.v2.request, url: `${server.url}v2.tar` },
      key: operatorKey,
      replyTimeoutMs: 60_000,
      canaryWindowMs: 0,
    });
    expect(report.devices).toEqual([
      {
        device: id,
        outcome: 'failed',
        version: '1.0.0',
        durationMs: expect.any(Number),
        code: 'E_UPDATE_INTERRUPTED',
        reason: expect.stringContaining("told by the device's status; its final reply never came"),
        lastStep: 'downloading',
      },
    ]);
  } finally {
    await device.publishAsync(topics.status, '', { qos: 1, retain: true });
    await device.endAsync();
    await operator.endAsync();
  }
});

test('a device that restarted mid-update onto another package is reported at the version its status gives, not the one from before', async () => {
  const id = 'rolled-back-offline';
  const device = await connectAsync(broker.url, { clientId: id });
  const operator = await connectAsync(broker.url, { clientId: 'operator-5' });
  const topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site: SITE, device: id });
  const status = (info: Record<string, unknown>) =>
    device.publishAsync(topics.status, JSON.stringify({ schema: STATUS_SCHEMA, state: 'online', reason: 'connected', ts: new Date().toISOString(), site: SITE, device: id, clientId: id, info }), { qos: 1, retain: true });
  const fleet = { watchWindowMs: 1000 };
  try {
    await status({ model: { name: 'fashion-sgmoe', version: '1.1.0' }, fleet });
    await device.subscribeAsync(topics.command('update'), { qos: 1 });
    // Stopped while downloading and rolled back on the spot (sgmoe model rollback --config): it comes back on 1.0.0.
    device.on('message', (_topic, payload) => {
      const correlationId = JSON.parse(payload.toString()).id as string;
      const progress = { schema: REPLY_SCHEMA, id: correlationId, command: 'update', ts: new Date().toISOString(), ok: true, progress: true, data: { correlationId, step: 'downloading', version: '1.2.0', message: 'downloading', ts: new Date().toISOString() } };
      const error = { code: 'E_UPDATE_INTERRUPTED', message: 'the device restarted during the update' };
      const lastUpdate = { outcome: 'failed', version: '1.2.0', correlationId, error, at: 'downloading', ts: new Date().toISOString() };
      void device.publishAsync(topics.reply('update'), JSON.stringify(progress), { qos: 1 }).then(() => status({ model: { name: 'fashion-sgmoe', version: '1.0.0' }, fleet, lastUpdate }));
    });
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: [id],
      request: { ...packed.v2.request, version: '1.2.0', url: `${server.url}v2.tar` },
      key: operatorKey,
      replyTimeoutMs: 60_000,
      canaryWindowMs: 0,
    });
    expect(report.devices).toEqual([expect.objectContaining({ device: id, outcome: 'failed', code: 'E_UPDATE_INTERRUPTED', version: '1.0.0' })]);
  } finally {
    await device.publishAsync(topics.status, '', { qos: 1, retain: true });
    await device.endAsync();
    await operator.endAsync();
  }
});

test('a device that goes offline mid-update times out with the last step seen and when it went offline', async () => {
  const id = 'vanishing';
  const device = await connectAsync(broker.url, { clientId: id });
  const operator = await connectAsync(broker.url, { clientId: 'operator-4' });
  const topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site: SITE, device: id });
  const status = (state: 'online' | 'offline', reason: 'connected' | 'lost') =>
    device.publishAsync(topics.status, JSON.stringify({ schema: STATUS_SCHEMA, state, reason, ts: new Date().toISOString(), site: SITE, device: id, clientId: id, info: {} }), { qos: 1, retain: true });
  try {
    await status('online', 'connected');
    await device.subscribeAsync(topics.command('update'), { qos: 1 });
    // It reports its download, then the broker publishes its last will (here: the status it would have left).
    device.on('message', (_topic, payload) => {
      const correlationId = JSON.parse(payload.toString()).id as string;
      const progress = { schema: REPLY_SCHEMA, id: correlationId, command: 'update', ts: new Date().toISOString(), ok: true, progress: true, data: { correlationId, step: 'downloading', version: '1.1.0', message: 'downloading', ts: new Date().toISOString() } };
      void device.publishAsync(topics.reply('update'), JSON.stringify(progress), { qos: 1 }).then(() => status('offline', 'lost'));
    });
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: [id],
      request: { ...packed.v2.request, url: `${server.url}v2.tar` },
      key: operatorKey,
      replyTimeoutMs: 5000,
      canaryWindowMs: 0,
    });
    expect(report.devices).toEqual([
      expect.objectContaining({ device: id, outcome: 'timeout', code: 'E_CMD_TIMEOUT', lastStep: 'downloading', reason: expect.stringMatching(/last step seen: downloading, .*; the device went offline \(lost; its last will was set at .*, when it connected\)$/) }),
    ]);
  } finally {
    await device.publishAsync(topics.status, '', { qos: 1, retain: true });
    await device.endAsync();
    await operator.endAsync();
  }
});

test('a reused correlation id: the outcome the status kept from the earlier request is not taken for this one, and the canary gate stays shut', async () => {
  // CHG-1 put 1.2.0 on the canary a minute ago; its status still says so while CHG-1 is sent again, for 1.3.0.
  const earlier = { outcome: 'done', version: '1.2.0', correlationId: 'CHG-1', ts: new Date(Date.now() - 60_000).toISOString() };
  const model = { name: 'fashion-sgmoe', version: '1.2.0' };
  const fleet = { watchWindowMs: 1000 };
  const canary = await ScriptedDevice.start(broker.url, SITE, 'reused-canary', { model, fleet, lastUpdate: earlier }, async (correlationId, device) => {
    // As the node: the status says the new run is downloading beside the old lastUpdate, then that the run failed.
    // Its final reply is lost (sent while it was cut from the broker): only the status tells.
    await device.progress(correlationId, 'requested', '1.3.0');
    await device.status('online', { model, fleet, lastUpdate: earlier, update: { step: 'downloading', version: '1.3.0', correlationId, since: new Date().toISOString() } });
    await device.progress(correlationId, 'downloading', '1.3.0');
    const error = { code: 'E_DOWNLOAD_REFUSED', message: 'the connection was refused' };
    await device.status('online', { model, fleet, lastUpdate: { outcome: 'failed', version: '1.3.0', correlationId, error, at: 'downloading', ts: new Date().toISOString() } });
  });
  const line = await ScriptedDevice.start(broker.url, SITE, 'reused-line', { model, fleet });
  const operator = await connectAsync(broker.url, { clientId: 'operator-reused' });
  try {
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['reused-canary', 'reused-line'],
      canary: ['reused-canary'],
      request: { ...packed.v2.request, version: '1.3.0', url: `${server.url}nowhere.tar` },
      key: operatorKey,
      correlationId: 'CHG-1',
      replyTimeoutMs: 20_000,
      canaryWindowMs: 500,
    });
    expect(report.canary?.devices).toEqual([
      expect.objectContaining({ device: 'reused-canary', outcome: 'failed', version: '1.2.0', code: 'E_DOWNLOAD_REFUSED', reason: expect.stringContaining("told by the device's status") }),
    ]);
    expect(report.devices).toEqual([expect.objectContaining({ device: 'reused-line', outcome: 'skipped' })]);
    expect(line.received).toBe(0);
  } finally {
    await operator.endAsync();
    await canary.close();
    await line.close();
  }
});

test('a canary that restarts during the canary window is not healthy, though it is online and reporting health when the window ends', async () => {
  const model = { name: 'fashion-sgmoe', version: '1.0.0' };
  const canary = await ScriptedDevice.start(broker.url, SITE, 'restarting-canary', { model, fleet: { watchWindowMs: 0 } }, async (correlationId, device) => {
    await device.progress(correlationId, 'requested', '1.1.0');
    await device.status('online', { model: { ...model, version: '1.1.0' }, fleet: { watchWindowMs: 0 } });
    await device.done(correlationId, '1.1.0');
  });
  const watcher = await connectAsync(broker.url, { clientId: 'restart-watcher' });
  await canary.watchWill(watcher);
  const operator = await connectAsync(broker.url, { clientId: 'operator-restart' });
  let restarted: Promise<void> = Promise.resolve();
  try {
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['restarting-canary'],
      canary: ['restarting-canary'],
      request: { ...packed.v2.request, url: `${server.url}v2.tar` },
      key: operatorKey,
      replyTimeoutMs: 20_000,
      canaryWindowMs: 3000,
      // Killed -9 as the window begins, and back (online, reporting health) well before it ends.
      onPhase: (phase) => void (phase.phase === 'canary-window' && (restarted = canary.restart())),
    });
    await restarted;
    expect(report.canary).toEqual({
      ok: false,
      devices: [expect.objectContaining({ device: 'restarting-canary', outcome: 'unhealthy', code: 'E_CANARY_UNHEALTHY', reason: expect.stringMatching(/^went offline during the window \(lost; .*\), then came back/) })],
    });
  } finally {
    await operator.endAsync();
    await watcher.endAsync();
    await canary.close();
  }
});

test('a device whose status says offline when its turn comes is not sent the command and is skipped at once, not waited for', async () => {
  const model = { name: 'fashion-sgmoe', version: '1.0.0' };
  const canary = await ScriptedDevice.start(broker.url, SITE, 'gate-canary', { model, fleet: { watchWindowMs: 0 } }, async (correlationId, device) => {
    await device.progress(correlationId, 'requested', '1.1.0');
    await device.done(correlationId, '1.1.0');
  });
  const gone = await ScriptedDevice.start(broker.url, SITE, 'gone-line', { model });
  await gone.status('offline', { model });
  const operator = await connectAsync(broker.url, { clientId: 'operator-offline' });
  try {
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['gate-canary', 'gone-line'],
      canary: ['gate-canary'],
      request: { ...packed.v2.request, url: `${server.url}v2.tar` },
      key: operatorKey,
      replyTimeoutMs: 120_000,
      canaryWindowMs: 300,
    });
    expect(report.canary?.ok).toBe(true);
    expect(report.devices).toEqual([
      expect.objectContaining({ device: 'gone-line', outcome: 'skipped', code: 'E_DEVICE_OFFLINE', reason: expect.stringMatching(/^offline when its turn came \(lost; .*\): not sent/) }),
    ]);
    expect(gone.received).toBe(0);
  } finally {
    await operator.endAsync();
    await canary.close();
    await gone.close();
  }
});
