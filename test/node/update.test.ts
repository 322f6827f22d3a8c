import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents, queryDecisions } from '../../src/audit/query';
import { signCommand } from '../../src/fleet/command-signature';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { signPackage } from '../../src/fleet/signature';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode, type CreatedNode } from '../../src/node/create';
import { waitUntil } from '../helpers/mqtt';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { variant, versionBoundaries } from '../fleet/support';

const tmp = tempDir();
let server: PackageServer;
let created: CreatedNode;
let operator: mqtt.MqttClient;
let update: { url: string; sha256: string; signature: unknown; version: string };
let operatorKey: Awaited<ReturnType<typeof readPrivateKey>>;
/** A command as the operator sends it: in an envelope signed for this device. */
const signed = (command: string, id: string, args?: unknown) =>
  JSON.stringify({ id, envelope: signCommand({ command, site: 'plant', device: 'cell-7', id, args }, operatorKey) });
const camera = new PushSource('line-camera');
const samples = Object.keys(JSON.parse(readFileSync(join(BUNDLED, 'samples', 'labels.json'), 'utf8')));

/** v1.1.0 of the shipped package: every sample goes to an expert (threshold above 1), signed with our key. */
async function signedUpdate(key: string) {
  const dir = variant(join(tmp.path, 'v1.1.0'), (m) => {
    m.version = '1.1.0';
    m.routing.earlyExit.threshold = 1.000001;
  });
  mkdirSync(join(tmp.path, 'repo'));
  const packed = await packPackage(dir, join(tmp.path, 'repo', 'fashion-sgmoe-1.1.0.tar'));
  const signature = await signPackage(packed.tar, await readPrivateKey(key));
  return { sha256: packed.sha256, signature, version: '1.1.0' };
}

beforeAll(async () => {
  const keys = await generateSigningKey(join(tmp.path, 'operator'));
  operatorKey = await readPrivateKey(keys.privateKeyPath);
  const signedPackage = await signedUpdate(keys.privateKeyPath);
  server = await servePackages(join(tmp.path, 'repo'), { host: '127.0.0.1', port: 0 });
  const config = parseNodeConfig({
    model: BUNDLED,
    device: 'x86_64-cpu',
    threads: 1,
    mqtt: { embeddedBroker: { port: 0 }, site: 'plant', device: 'cell-7' },
    audit: { file: join(tmp.path, 'audit.db') },
    fleet: { root: join(tmp.path, 'device'), trustedKeys: [keys.publicKeyPath], watch: { windowMs: 1500, intervalMs: 100, minFrames: 5, maxDrift: 1 } },
  });
  created = await createEdgeNode(config, { extraSources: [{ source: camera, preprocess: {} }] });
  operator = await mqtt.connectAsync(created.broker!.url);
  update = { ...signedPackage, url: `${server.url}fashion-sgmoe-1.1.0.tar` };
});

afterAll(async () => {
  await operator?.endAsync();
  await server?.close();
  tmp.cleanup();
});

describe('a fleet update of a running node', () => {
  it('swaps to the new version while frames stream (none lost or failed, one frame boundary, steps reported and audited), then rolls back on command', async () => {
    const { node } = created;
    const decided: { id: string; version: string; earlyExit: boolean }[] = [];
    const rejected: string[] = [];
    node.on('decision', (frame, d) => decided.push({ id: frame.id, version: d.model.version, earlyExit: d.earlyExit }));
    node.on('rejected', (frame) => rejected.push(frame.id));
    const running = node.run();

    const replies: any[] = [];
    operator.on('message', (_topic, payload) => replies.push(JSON.parse(payload.toString())));
    await operator.subscribeAsync('sgmoe/v1/plant/cell-7/cmd/update/reply', { qos: 1 });

    let streaming = true;
    let pushed = 0;
    const stream = (async () => {
      while (streaming) {
        await camera.push({ id: `f-${pushed}`, bytes: readFileSync(join(BUNDLED, 'samples', samples[pushed % samples.length])) });
        pushed++;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await waitUntil(() => decided.length >= 50, 30_000, 'frames on 1.0.0');

    await operator.publishAsync('sgmoe/v1/plant/cell-7/cmd/update', signed('update', 'upd-1', update), { qos: 1 });
    await waitUntil(() => replies.some((r) => r.id === 'upd-1' && !r.progress), 60_000, 'the update to finish');
    await waitUntil(() => decided.filter((d) => d.version === '1.1.0').length >= 50, 30_000, 'frames on 1.1.0');
    // Pointer and packages as a restart would find them: 1.1.0 current, 1.0.0 kept for rollback.
    expect(JSON.parse(readFileSync(join(tmp.path, 'device', 'current'), 'utf8')).current).toBe('fashion-sgmoe-1.1.0');
    expect(existsSync(join(tmp.path, 'device', 'packages', 'fashion-sgmoe-1.0.0'))).toBe(true);

    // An operator rolls the running device back over MQTT: frames keep flowing, now on 1.0.0 again.
    const rollbackReplies: any[] = [];
    operator.on('message', (topic, payload) => topic.endsWith('cmd/rollback/reply') && rollbackReplies.push(JSON.parse(payload.toString())));
    await operator.subscribeAsync('sgmoe/v1/plant/cell-7/cmd/rollback/reply', { qos: 1 });
    await operator.publishAsync('sgmoe/v1/plant/cell-7/cmd/rollback', signed('rollback', 'rb-1'), { qos: 1 });
    await waitUntil(() => rollbackReplies.length > 0, 30_000, 'the rollback reply');
    expect(rollbackReplies[0]).toMatchObject({ id: 'rb-1', ok: true, data: { from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0' } });
    const afterRollback = decided.length;
    await waitUntil(() => decided.length >= afterRollback + 30, 30_000, 'frames after the rollback');
    streaming = false;
    await stream;
    camera.end();
    await running;
    await node.stop();

    // Every frame pushed was decided, none failed; the version changed at two frame boundaries, 1.0.0 -> 1.1.0 -> 1.0.0.
    expect(rejected).toEqual([]);
    expect(decided).toHaveLength(pushed);
    const versions = decided.map((d) => d.version);
    const boundaries = versionBoundaries(versions);
    expect(boundaries.map((b) => versions[b])).toEqual(['1.1.0', '1.0.0']);
    // 1.1.0's threshold sends every frame to an expert.
    expect(decided.filter((d) => d.version === '1.1.0').every((d) => !d.earlyExit)).toBe(true);

    // One progress message per step, then exactly one final reply (long after it, nothing more came).
    const forUpdate = replies.filter((r) => r.id === 'upd-1');
    expect(forUpdate.filter((r) => r.progress).map((r) => r.data.step)).toEqual(['requested', 'downloading', 'verifying', 'unpacking', 'selftesting', 'staged', 'swapping', 'watching']);
    expect(forUpdate.filter((r) => !r.progress)).toEqual([expect.objectContaining({ ok: true, data: { step: 'done', version: '1.1.0', previous: 'fashion-sgmoe-1.0.0' } })]);
    expect(forUpdate.at(-1).progress).toBeUndefined();
    expect(replies.every((r) => r.ok)).toBe(true);

    const db = openAuditDbReadOnly(join(tmp.path, 'audit.db'));
    try {
      const rows = queryDecisions(db, {}, { limit: 100_000 });
      expect(rows.filter((r) => r.status !== 'ok')).toEqual([]);
      expect(versionBoundaries(rows.map((r) => r.modelVersion!))).toHaveLength(2);
      expect(listEvents(db, {}, ['model_updated']).map((e) => e.details?.correlationId)).toEqual(['upd-1']);
      expect(listEvents(db, {}, ['model_rolled_back']).map((e) => e.details?.correlationId)).toEqual(['rb-1']);
      // Every step of the update left an event under its correlation id.
      expect(listEvents(db, {}, undefined, 'upd-1').map((e) => e.kind)).toEqual([
        'update_requested',
        'update_downloaded',
        'update_verified',
        'update_staged',
        'model_updated',
        'update_watched',
        'update_done',
      ]);
      // Each says what it proves, not what the next step starts doing.
      const said = new Map(listEvents(db, {}, ['update_downloaded', 'update_verified'], 'upd-1').map((e) => [e.kind, e.message]));
      expect(Object.fromEntries(said)).toEqual({ update_downloaded: '1.1.0: downloaded whole', update_verified: '1.1.0: its sha256 matches the signed one' });
    } finally {
      db.close();
    }
    expect(JSON.parse(readFileSync(join(tmp.path, 'device', 'current'), 'utf8')).current).toBe('fashion-sgmoe-1.0.0');
  });
});
