import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { auditStats, openAuditDbReadOnly } from '../../src/audit';
import { generateSigningKey } from '../../src/fleet/keys';
import type { Frame } from '../../src/ingest/frame';
import type { FrameSource } from '../../src/ingest/source';
import { PushSource } from '../../src/ingest/sources/push';
import type { EdgeNode } from '../../src/node/edge-node';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { BUNDLED } from '../helpers/package';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/mqtt';
import { BEARING, SAMPLES, SAMPLE_NAMES, hotFolder, recordings, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());
const PNG = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));

/** Resolves at the node's `count`-th decision. */
function decisions(node: EdgeNode, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => node.on('decision', () => ++seen === count && resolve()));
}

/** An SDK user's own source, without BaseSource: it yields `frames`, then waits for one more forever, stop or not. */
function neverEndingSource(frames: Frame[]): FrameSource {
  const counts = { frames: 0, decided: 0, rejected: 0, dropped: 0 };
  return {
    name: 'never-ending',
    kind: 'push',
    stats: () => ({ name: 'never-ending', kind: 'push', ...counts, queued: 0, errors: 0 }),
    settle: async (_frame, outcome) => void counts[outcome.status]++,
    stop: async () => undefined,
    async *[Symbol.asyncIterator]() {
      for (const frame of frames) {
        counts.frames++;
        yield frame;
      }
      await new Promise(() => undefined);
    },
  };
}

describe('one node per audit log', () => {
  it('a second node on the same audit log is refused, from this process or another, naming the holder; a lock left by a killed node does not keep the next one out', async () => {
    const file = join(tmp.path, 'data', 'audit.db');
    const config = { sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), 2)}` }], audit: { file } };
    const first = await sampleNode(config);
    await expect(sampleNode(config)).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining('another node of this process holds this audit log') });
    await first.node.run();
    await first.node.stop();
    expect(first.decisions).toHaveLength(2);
    expect(existsSync(`${file}.lock`)).toBe(false);

    // Another process holds it (as a second `sgmoe run` on the same config would), then dies without letting go.
    const other = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fleet', 'lock-contender.ts'), `${file}.lock`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    const said: string[] = [];
    other.stdout.on('data', (d: Buffer) => said.push(...d.toString().trim().split('\n')));
    try {
      await waitUntil(() => said.includes('ready'), 30_000, 'the other process to load');
      other.stdin.write('go\n');
      await waitUntil(() => said.length === 2, 30_000, 'the other process to take the lock');
      expect(said[1]).toBe('held');
      await expect(sampleNode(config)).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining(`another process holds this audit log: pid ${other.pid}`) });
    } finally {
      other.kill('SIGKILL');
      if (other.exitCode === null && other.signalCode === null) await once(other, 'exit');
    }
    const next = await sampleNode({ ...config, sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox-2'), 1)}` }] });
    await next.node.run();
    await next.node.stop();
    expect(next.decisions).toHaveLength(1);
  });
});

describe('a stop that fails to let go of a part', () => {
  it('still lets go of the rest (the audit log\'s lock among them), logs and rejects with the failure; the next node in this process starts', async () => {
    const dir = join(tmp.path, 'closers');
    const keys = await generateSigningKey(join(dir, 'operator'));
    const file = join(dir, 'data', 'audit.db');
    const config = parseNodeConfig({
      model: BUNDLED,
      threads: 1,
      once: true,
      sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 1)}` }],
      audit: { file },
      fleet: { root: join(dir, 'device'), trustedKeys: [keys.publicKeyPath] },
    });
    const lines: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const first = await createEdgeNode(config, { logger });
    await first.node.run();
    // The package store's lock, let go before the audit log's, can no longer be read: its release throws.
    const storeLock = join(dir, 'device', 'node.lock');
    rmSync(storeLock);
    mkdirSync(storeLock);
    await expect(first.node.stop()).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE', message: expect.stringContaining(storeLock) });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'a part of the node failed to close', err: expect.stringContaining(storeLock) }));
    expect(existsSync(`${file}.lock`)).toBe(false);

    rmSync(storeLock, { recursive: true }); // the operator clears it
    const next = await createEdgeNode(config);
    await next.node.run();
    await next.node.stop();
  });

  it("lets go of its locks when an SDK user's source fails to stop and goes on yielding, only once nothing decides any more; what it yields then is dropped, counted and logged, and stop rejects with the failure", async () => {
    const dir = join(tmp.path, 'source-stop');
    const file = join(dir, 'data', 'audit.db');
    const config = parseNodeConfig({ model: BUNDLED, threads: 1, audit: { file }, mqtt: { embeddedBroker: { port: 0 } } });
    const lines: Array<{ msg: string; frameId?: string; source?: string; code?: string }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const camera = new PushSource('camera');
    camera.stop = () => Promise.reject(new Error('the camera would not let go'));
    const { node, broker, transport } = await createEdgeNode(config, { logger, extraSources: [{ source: camera, preprocess: {} }] });
    if (!broker || !transport) throw new Error('expected the embedded broker and the transport');
    const operator = await mqtt.connectAsync(broker.url);
    const results: string[] = [];
    operator.on('message', (_topic, payload) => results.push(JSON.parse(payload.toString()).frameId));
    await operator.subscribeAsync(transport.topics.result, { qos: 1 });
    // Per frame the node decided or rejected: whether the audit log's lock was still held.
    const lockHeld: boolean[] = [];
    for (const event of ['decision', 'rejected'] as const) node.on(event, () => lockHeld.push(existsSync(`${file}.lock`)));
    const decided = decisions(node, 3);
    const running = node.run();
    for (let i = 0; i < 3; i++) await camera.push({ id: `before-${i}`, bytes: PNG });
    await decided;
    await waitUntil(() => results.length === 3, 10_000, 'the three results');
    await operator.endAsync();

    // Its pump waits for the camera's next frame: the stop ends that wait rather than hang on it.
    await expect(node.stop()).rejects.toMatchObject({ code: 'E_SOURCE_FAILED', message: 'source camera failed to stop: the camera would not let go' });
    expect(existsSync(`${file}.lock`)).toBe(false);
    const dropped: string[] = [];
    node.on('dropped', (frame) => dropped.push(frame.id));
    await camera.push({ id: 'after-0', bytes: PNG }); // the answer to the wait the pump gave up
    await camera.push({ id: 'after-1', bytes: PNG }); // never asked for by the pump
    await waitUntil(() => dropped.length === 2 || lockHeld.length > 3, 10_000, 'the frames yielded after the stop, dropped or taken');
    expect(lockHeld).toEqual([true, true, true]);
    expect(dropped).toEqual(['after-0', 'after-1']);
    for (const frameId of dropped) expect(lines).toContainEqual(expect.objectContaining({ msg: 'a frame came after the node stopped taking frames: dropped', source: 'camera', frameId }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'a source failed to stop', source: 'camera', code: 'E_SOURCE_FAILED' }));
    await running;
    // Dropped after the audit log closed: no row, counted as unaudited.
    expect(node.snapshot()).toMatchObject({ totals: { ingested: 5, decided: 3, rejected: 0, dropped: 2, pending: 0 }, unaudited: 2 });
    const db = openAuditDbReadOnly(file);
    try {
      expect(auditStats(db, {}).byStatus).toEqual({ ok: 3, rejected: 0, dropped: 0 });
    } finally {
      db.close();
    }

    const next = await createEdgeNode(config);
    await next.node.stop();
  });

  it("lets go of its locks when an SDK user's signal source fails to stop: the failure is the node's stop's, not an unhandled rejection", async () => {
    const file = join(tmp.path, 'signal-stop', 'data', 'audit.db');
    recordings(join(tmp.path, 'signal-stop'), 1);
    const recorder = new PushSource('recorder');
    recorder.stop = () => Promise.reject(new Error('the recorder would not let go'));
    const { node } = await createEdgeNode(parseNodeConfig({ model: BEARING, threads: 1, audit: { file } }), { extraSources: [{ source: recorder, preprocess: {} }] });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const decided = decisions(node, 3);
      const running = node.run();
      await recorder.push({ id: 'rec-0', bytes: readFileSync(join(tmp.path, 'signal-stop', 'rec-0.wav')), meta: { file: 'rec-0.wav' } });
      await decided;
      await expect(node.stop()).rejects.toMatchObject({ code: 'E_SOURCE_FAILED', message: expect.stringContaining('the recorder would not let go') });
      expect(existsSync(`${file}.lock`)).toBe(false);
      recorder.end();
      await running;
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
      expect(node.snapshot().totals).toMatchObject({ ingested: 3, decided: 3, pending: 0 });
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('does not wait forever for a source whose frames never come after its stop: the frames it yielded are decided, the locks go', async () => {
    const dir = join(tmp.path, 'never-ending');
    const file = join(dir, 'data', 'audit.db');
    const config = parseNodeConfig({ model: BUNDLED, threads: 1, audit: { file } });
    const frames = [0, 1].map((i): Frame => ({ id: `frame-${i}`, source: 'never-ending', receivedAt: Date.now(), bytes: PNG }));
    const { node } = await createEdgeNode(config, { extraSources: [{ source: neverEndingSource(frames), preprocess: {} }] });
    const decided = decisions(node, 2);
    const running = node.run();
    await decided;
    await node.stop();
    await running;
    expect(existsSync(`${file}.lock`)).toBe(false);
    expect(node.snapshot().totals).toMatchObject({ ingested: 2, decided: 2, pending: 0 });
  });
});

describe('a start that fails', () => {
  it("lets go of the package store's lock: the next start in this process says what is wrong, not E_STORE_IN_USE", async () => {
    const dir = join(tmp.path, 'failed-start');
    const keys = await generateSigningKey(join(dir, 'operator'));
    const fleet = { root: join(dir, 'device'), trustedKeys: [keys.publicKeyPath] };
    const storeLock = join(dir, 'device', 'node.lock');
    // First boot on a folder that holds no package: the store is recovered (and locked), then adopting fails.
    const empty = join(dir, 'not-a-package');
    mkdirSync(empty, { recursive: true });
    await expect(createEdgeNode(parseNodeConfig({ model: empty, threads: 1, fleet }))).rejects.toMatchObject({ code: 'E_PART_MISSING' });
    expect(existsSync(storeLock)).toBe(false);

    const config = parseNodeConfig({ model: BUNDLED, threads: 1, fleet });
    const first = await createEdgeNode(config);
    await first.node.stop();
    // The store's current package damaged: the store, locked meanwhile, finds it changed since it entered.
    const { current } = JSON.parse(readFileSync(join(dir, 'device', 'current'), 'utf8')) as { current: string };
    writeFileSync(join(dir, 'device', 'packages', current, 'gate.onnx'), 'not a model');
    await expect(createEdgeNode(config)).rejects.toMatchObject({ code: 'E_STORE_CORRUPT' });
    expect(existsSync(storeLock)).toBe(false);
    await expect(createEdgeNode(config)).rejects.toMatchObject({ code: 'E_STORE_CORRUPT' });
    // A store of an earlier release records no digests: its engine does not load, the store is locked meanwhile.
    rmSync(join(dir, 'device', 'digests.json'));
    await expect(createEdgeNode(config)).rejects.toMatchObject({ code: 'E_HASH_MISMATCH' });
    expect(existsSync(storeLock)).toBe(false);
    await expect(createEdgeNode(config)).rejects.toMatchObject({ code: 'E_HASH_MISMATCH' });
  });
});
