import { mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { connectAsync, type MqttClient } from 'mqtt';
import { readInventory } from '../../src/fleet/inventory';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { publishUpdate } from '../../src/fleet/publish';
import { sendCommand } from '../../src/fleet/remote-command';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { signPackage, writeSignature } from '../../src/fleet/signature';
import { DEFAULT_TOPIC_PREFIX, type ReplyPayload } from '../../src/protocol';
import { Mosquitto, waitUntil } from '../helpers/mqtt';
import { copyPackage } from '../helpers/package';
import { sgmoeAsync } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { hotFolder, sampleNode, type SampleNode } from '../node/sample-node';
import { variant } from './support';

/**
 * Fleet operations as an operator meets them: mosquitto, two real nodes with update agents, a package server,
 * and the `sgmoe` command. The health watch (WATCH_MS) is longer than the `--timeout` given to publish.
 */
const SITE = 'plant-1';
const WATCH_MS = 16_000;
const tmp = tempDir('sgmoe-rollout-');
let broker: Mosquitto;
let server: PackageServer;
let operator: MqttClient;
let listener: MqttClient;
let operatorKey: KeyObject;
let rogueKey: KeyObject;
const keyPath = join(tmp.path, 'operator.key');
const nodes: Record<string, { node: SampleNode; running: Promise<void>; audit: string }> = {};
const tars: Record<string, { tar: string; sha256: string }> = {};
/** Every reply on the site's update and rollback reply topics, in arrival order. */
const replies: ReplyPayload[] = [];

async function startNode(device: string): Promise<void> {
  const dir = join(tmp.path, device);
  const audit = join(dir, 'audit.db');
  const node = await sampleNode({
    sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 2)}` }],
    mqtt: { url: broker.url, site: SITE, device },
    audit: { file: audit },
    once: false,
    healthIntervalMs: 200,
    fleet: { root: join(dir, 'fleet'), trustedKeys: [join(tmp.path, 'operator.pub')], watch: { windowMs: WATCH_MS, intervalMs: 200 }, limits: { downloadRetries: 1, retryBackoffMs: 200 } },
  });
  const decided = new Promise<void>((resolve) => {
    let n = 0;
    node.node.on('decision', () => ++n === 2 && resolve());
  });
  const running = node.node.run();
  await decided;
  nodes[device] = { node, running, audit };
}

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await broker.start();
  await generateSigningKey(join(tmp.path, 'operator'));
  await generateSigningKey(join(tmp.path, 'rogue'));
  operatorKey = await readPrivateKey(keyPath);
  rogueKey = await readPrivateKey(join(tmp.path, 'rogue.key'));
  const repo = join(tmp.path, 'repo');
  mkdirSync(repo);
  for (const [name, version] of [
    ['same', '1.0.0'],
    ['next', '1.1.0'],
  ]) {
    const dir = version === '1.0.0' ? copyPackage(join(tmp.path, name)) : variant(join(tmp.path, name), (m) => (m.version = version));
    const packed = await packPackage(dir, join(repo, `${name}.tar`));
    await writeSignature(packed.tar, await signPackage(packed.tar, operatorKey));
    tars[name] = packed;
  }
  server = await servePackages(repo, { host: '127.0.0.1', port: 0 });
  await startNode('cell-1');
  await startNode('cell-2');
  operator = await connectAsync(broker.url, { clientId: 'rollout-test-operator' });
  // A client of its own records the replies: the operator's client also carries inventory markers and such.
  listener = await connectAsync(broker.url, { clientId: 'rollout-test-replies' });
  listener.on('message', (_topic, payload) => payload.length > 0 && replies.push(JSON.parse(payload.toString('utf8'))));
  await listener.subscribeAsync([`sgmoe/v1/${SITE}/+/cmd/update/reply`, `sgmoe/v1/${SITE}/+/cmd/rollback/reply`, `sgmoe/v1/${SITE}/+/cmd/ping/reply`], { qos: 1 });
}, 120_000);

afterAll(async () => {
  await operator?.endAsync();
  await listener?.endAsync();
  for (const { node, running } of Object.values(nodes)) {
    await node.node.stop();
    await running;
  }
  await server?.close();
  await broker?.stop();
  tmp.cleanup();
});

/** Waits for a ping's answer from `device`: its replies before it have arrived (one connection, in order). */
async function barrier(device: string): Promise<void> {
  await sendCommand({ client: operator, site: SITE, device, command: 'ping', timeoutMs: 30_000 });
}

const finals = (id: string) => replies.filter((r) => r.id === id && !(r.ok && r.progress));

describe('refused updates', () => {
  const signed = async (name: string, key: KeyObject) => ({ url: `${server.url}${name}.tar`, sha256: tars[name].sha256, signature: await signPackage(tars[name].tar, key) });

  test('an unsigned, an unknown-key and a not-newer update each get one final error reply, an audit event with code and id, and leave the status truthful', async () => {
    const requests: Array<[string, unknown, string]> = [
      ['unsigned-1', { url: `${server.url}next.tar`, sha256: tars.next.sha256, version: '1.1.0' }, 'E_SIGNATURE_MISSING'],
      ['rogue-1', { ...(await signed('next', rogueKey)), version: '1.1.0' }, 'E_SIGNATURE_UNKNOWN_KEY'],
      ['same-1', { ...(await signed('same', operatorKey)), version: '1.0.0' }, 'E_VERSION_NOT_NEWER'],
    ];
    for (const [id, args, code] of requests) {
      const reply = await sendCommand({ client: operator, site: SITE, device: 'cell-1', command: 'update', args, key: operatorKey, correlationId: id, timeoutMs: 30_000 });
      expect(reply).toMatchObject({ ok: false, error: { code } });
    }
    // An envelope by a key the device does not trust is refused before the update agent sees it.
    const unauthorised = await sendCommand({ client: operator, site: SITE, device: 'cell-1', command: 'update', args: requests[1][1], key: rogueKey, correlationId: 'rogue-envelope-1', timeoutMs: 30_000 });
    expect(unauthorised).toMatchObject({ ok: false, error: { code: 'E_CMD_UNAUTHORISED' } });
    await barrier('cell-1');

    // Exactly one final reply per request: the error, never an ok "failed" step beside it.
    for (const [id, , code] of requests) {
      expect(finals(id)).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ code }) })]);
      expect(replies.filter((r) => r.id === id && r.ok && r.progress).map((r) => (r.ok ? (r.data as { step: string }).step : null))).toEqual(['requested']);
    }
    expect(finals('rogue-envelope-1')).toHaveLength(1);

    // The retained status: 1.0.0 runs, nothing is being updated, and the last refusal is history.
    const { inventory, stop } = await readInventory(operator, { site: SITE, topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    expect(inventory.devices.find((d) => d.device === 'cell-1')).toMatchObject({ version: '1.0.0', update: 'last: failed 1.0.0 E_VERSION_NOT_NEWER', watchWindowMs: WATCH_MS });

    // `sgmoe audit events` lists each refusal with its code and correlation id.
    const listed = await sgmoeAsync('audit', 'events', '--db', nodes['cell-1'].audit, '--kind', 'update_refused,command_refused');
    expect(listed.status).toBe(0);
    const events = listed.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => [e.kind, e.details.correlationId ?? e.details.id, e.details.code])).toEqual([
      ['update_refused', 'unsigned-1', 'E_SIGNATURE_MISSING'],
      ['update_refused', 'rogue-1', 'E_SIGNATURE_UNKNOWN_KEY'],
      ['update_refused', 'same-1', 'E_VERSION_NOT_NEWER'],
      ['command_refused', 'rogue-envelope-1', 'E_CMD_UNAUTHORISED'],
    ]);
    const one = await sgmoeAsync('audit', 'events', '--db', nodes['cell-1'].audit, '--id', 'same-1');
    expect(one.stdout.trim().split('\n').map((l) => JSON.parse(l).kind)).toEqual(['update_requested', 'update_refused']);
  }, 120_000);
});

describe('a device that stops answering', () => {
  let holding: Server;
  const held: ServerResponse[] = [];
  beforeAll(async () => {
    // Accepts the download and sends nothing: the device stays at its download step.
    holding = createServer((_req: IncomingMessage, res: ServerResponse) => void held.push(res));
    await new Promise<void>((ok) => holding.listen(0, '127.0.0.1', ok));
  });
  afterAll(async () => {
    holding.closeAllConnections();
    await new Promise((ok) => holding.close(ok));
  });

  test('publish times out naming the last step it saw; the device later ends the update with its own final reply', async () => {
    const url = `http://127.0.0.1:${(holding.address() as AddressInfo).port}/next.tar`;
    const steps: string[] = [];
    const report = await publishUpdate({
      client: operator,
      site: SITE,
      devices: ['cell-2'],
      request: { url, sha256: tars.next.sha256, signature: await signPackage(tars.next.tar, operatorKey), version: '1.1.0' },
      key: operatorKey,
      correlationId: 'held-1',
      replyTimeoutMs: 3000,
      canaryWindowMs: 0,
      onProgress: (p) => steps.push(p.step),
    });
    const [outcome] = report.devices;
    expect(outcome).toMatchObject({ device: 'cell-2', outcome: 'timeout', code: 'E_CMD_TIMEOUT', version: '1.0.0' });
    // Whatever step the device had reached when the deadline came, the reason names it.
    if (outcome.lastStep) expect(outcome.reason).toContain(`last step seen: ${outcome.lastStep}`);
    else expect(outcome.reason).toContain('never acknowledged');
    expect(steps.at(-1) ?? null).toBe(outcome.lastStep);

    // The server gives up: the device's download fails (after its retries) and it answers once, with the cause.
    await waitUntil(() => held.length > 0, 30_000, 'the held download');
    holding.closeAllConnections();
    holding.close();
    await waitUntil(() => finals('held-1').length > 0, 60_000, 'the device to end the held update');
    await barrier('cell-2');
    expect(finals('held-1')).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ code: expect.stringMatching(/^E_DOWNLOAD_/) }) })]);
  }, 120_000);
});

describe('a canary rollout through `sgmoe model publish`', () => {
  test('an unknown device is refused at once, naming the devices that exist', async () => {
    const run = await sgmoeAsync('model', 'publish', tars.next.tar, '--broker', broker.url, '--site', SITE, '--device', 'cell-9', '--key', keyPath, '--url', `${server.url}next.tar`);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('E_DEVICE_UNKNOWN');
    expect(run.stderr).toMatch(/no device cell-9 has ever reported on site plant-1.*cell-1, cell-2/);
  });

  test('an unsigned tar is refused before anything is sent, saying to run sgmoe model sign', async () => {
    const unsigned = join(tmp.path, 'repo', 'unsigned.tar');
    await packPackage(join(tmp.path, 'next'), unsigned);
    const run = await sgmoeAsync('model', 'publish', unsigned, '--broker', broker.url, '--site', SITE, '--device', 'cell-1', '--key', keyPath, '--url', `${server.url}unsigned.tar`);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('E_SIGNATURE_MISSING');
    expect(run.stderr).toContain(`sgmoe model sign ${unsigned} --key`);
  });

  test('the canary goes first with its watch time announced, each step is shown per device, a --timeout shorter than the watch is explained, and the final table tells each outcome', async () => {
    const before = replies.length;
    const run = await sgmoeAsync(
      'model', 'publish', tars.next.tar,
      '--broker', broker.url, '--site', SITE, '--device', 'cell-1,cell-2', '--canary', 'cell-1',
      '--key', keyPath, '--url', `${server.url}next.tar`, '--timeout', '15', '--window', '3', '--id', 'rollout-1',
    );
    expect(run.stderr).not.toMatch(/E_INTERNAL/);
    expect(run.status).toBe(0);
    const out = run.stdout;
    // The deadline is explained before anything is sent: --timeout to reach the watch, then the device's own watch.
    expect(out).toMatch(/cell-1: 15\.0 s \(--timeout\) to reach its health watch, then 16\.0 s of watch .*waited for, not cut short/);
    expect(out).toMatch(/canary phase: cell-1 update first; each reports done after a health watch of 16\.0 s on the device/);
    // Each step of each device, with the elapsed time, the canary's before the other's.
    for (const device of ['cell-1', 'cell-2']) {
      for (const step of ['requested', 'downloading', 'verifying', 'unpacking', 'selftesting', 'staged', 'swapping', 'watching']) {
        expect(out).toMatch(new RegExp(`\\[\\s*\\d+\\.\\d s\\] ${device}\\s+${step}`));
      }
    }
    expect(out).toMatch(/cell-1\s+watching \(health watch 16\.0 s\)/);
    expect(out.indexOf('canaries done: watching cell-1')).toBeLessThan(out.search(/\] cell-2\s+requested/));
    // The final table: device, outcome, version, duration, code, reason.
    expect(out).toMatch(/device\s+outcome\s+version\s+duration\s+code\s+reason/);
    expect(out).toMatch(/cell-1 \(canary\)\s+done\s+1\.1\.0\s+\d+\.\d s\s+-/);
    expect(out).toMatch(/\ncell-2\s+done\s+1\.1\.0\s+\d+\.\d s\s+-/);

    // Exactly one final reply per device, the success, after its progress messages.
    await barrier('cell-1');
    await barrier('cell-2');
    const rollout = replies.slice(before).filter((r) => r.id === 'rollout-1');
    expect(rollout.filter((r) => !(r.ok && r.progress))).toHaveLength(2);
    expect(finals('rollout-1').every((r) => r.ok && (r.data as { step: string }).step === 'done')).toBe(true);

    // Every step audited under the rollout's id on each device.
    for (const device of ['cell-1', 'cell-2']) {
      const listed = await sgmoeAsync('audit', 'events', '--db', nodes[device].audit, '--id', 'rollout-1');
      expect(listed.stdout.trim().split('\n').map((l) => JSON.parse(l).kind)).toEqual([
        'update_requested',
        'update_downloaded',
        'update_verified',
        'update_staged',
        'model_updated',
        'update_watched',
        'update_done',
      ]);
    }
    const { inventory, stop } = await readInventory(operator, { site: SITE, topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    expect(inventory.devices.map((d) => [d.device, d.version, d.update])).toEqual([
      ['cell-1', '1.1.0', 'last: done 1.1.0'],
      ['cell-2', '1.1.0', 'last: done 1.1.0'],
    ]);
  }, 180_000);

  test('sgmoe model rollback over MQTT answers once and audits the rollback with its correlation id', async () => {
    const run = await sgmoeAsync('model', 'rollback', '--broker', broker.url, '--site', SITE, '--device', 'cell-2', '--key', keyPath, '--id', 'rb-1');
    expect(run.status).toBe(0);
    await barrier('cell-2');
    expect(finals('rb-1')).toEqual([expect.objectContaining({ ok: true, data: { from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0' } })]);
    const listed = await sgmoeAsync('audit', 'events', '--db', nodes['cell-2'].audit, '--kind', 'model_rolled_back');
    expect(listed.stdout.trim().split('\n').map((l) => JSON.parse(l).details.correlationId)).toEqual(['rb-1']);
  });
});
