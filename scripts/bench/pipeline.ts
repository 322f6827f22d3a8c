/**
 * The whole edge node against its floor. For the package's 28×28 PNG samples and for 640×480 JPEG frames with an
 * ROI (the samples placed in a larger scene with sharp), frames are pushed into a real node with the audit log and
 * MQTT on (embedded aedes broker, outbox, a subscriber counting the results), and the same frames go through
 * preprocessing + engine alone (the floor: sharp and ONNX Runtime overlapped, the same micro-batches).
 *
 * - throughput: every frame pushed as fast as the node takes it, until the subscriber has every result;
 * - latency: one frame at a time, from the push (frame received) to the result arriving at the subscriber
 *   (decision published), with the profile's micro-batch wait and without it; each frame goes through the floor
 *   and every node variant in turn, so that they are compared under the same load.
 * Node variants split the overhead: without MQTT, with the outbox's default `synchronous: full` (an fsync per
 * result) and with `normal`, and with the dashboard on (thumbnails, metrics).
 *
 * Run: npx tsx scripts/bench/pipeline.ts   (BENCH_ROUNDS, BENCH_PNG_FRAMES, BENCH_JPEG_FRAMES, BENCH_LATENCY_FRAMES)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import sharp from 'sharp';
import { Engine } from '../../src/engine/engine';
import type { DeviceProfile } from '../../src/engine/profile';
import { Preprocessor, type PreprocessOptions } from '../../src/ingest/preprocess';
import { imageInputOf } from '../../src/model/manifest';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode, resolveProfile } from '../../src/node/create';
import { startDashboard } from '../../src/node/dashboard';
import { BUNDLED_MODEL } from '../../src/node/demo';
import { silentLogger } from '../../src/log';
import { tempDir } from '../../test/helpers/tmp';
import { median, percentile, printComparison, printHeader } from './lib';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PNG_FRAMES = Number(process.env.BENCH_PNG_FRAMES ?? 1200);
const JPEG_FRAMES = Number(process.env.BENCH_JPEG_FRAMES ?? 300);
const LATENCY_FRAMES = Number(process.env.BENCH_LATENCY_FRAMES ?? 150);
/** ONNX Runtime intra-op threads: this box shares its 2 cores with other work. */
const THREADS = 1;
/** Where the sample sits in the 640×480 scene, and so the ROI the node crops. */
const ROI = { x: 232, y: 152, width: 196, height: 196 };

const tmp = tempDir('sgmoe-bench-pipeline-');
let runs = 0;

interface FrameSet {
  name: string;
  frames: Buffer[];
  preprocess: PreprocessOptions;
}

function samples(): Buffer[] {
  const dir = join(BUNDLED_MODEL, 'samples');
  return readdirSync(dir)
    .filter((n) => n.endsWith('.png'))
    .sort()
    .map((n) => readFileSync(join(dir, n)));
}

/** Each sample enlarged into the ROI of a 640×480 gray scene with some texture, as a camera JPEG. */
async function sceneJpeg(sample: Buffer, i: number): Promise<Buffer> {
  const item = await sharp(sample).resize(ROI.width, ROI.height, { kernel: 'nearest' }).png().toBuffer();
  const noise = Buffer.alloc(640 * 480, 0);
  for (let p = 0; p < noise.length; p++) noise[p] = 90 + ((p * 7919 + i * 104729) % 23);
  return sharp(noise, { raw: { width: 640, height: 480, channels: 1 } })
    .composite([{ input: item, left: ROI.x, top: ROI.y }])
    .jpeg({ quality: 85 })
    .toBuffer();
}

const repeat = (frames: Buffer[], n: number) => Array.from({ length: n }, (_, i) => frames[i % frames.length]);

/** The floor: preprocessing of the next micro-batch overlaps inference of the current one; nothing else. */
async function floorThroughput(engine: Engine, set: FrameSet, batch: number): Promise<number> {
  const pre = new Preprocessor(imageInputOf(engine.manifest), set.preprocess);
  const chunks = Array.from({ length: Math.ceil(set.frames.length / batch) }, (_, i) => set.frames.slice(i * batch, (i + 1) * batch));
  const t0 = performance.now();
  let next = Promise.all(chunks[0].map((f) => pre.toTensor(f)));
  for (let i = 0; i < chunks.length; i++) {
    const tensors = await next;
    if (i + 1 < chunks.length) next = Promise.all(chunks[i + 1].map((f) => pre.toTensor(f)));
    await engine.inferBatch(tensors);
  }
  return set.frames.length / ((performance.now() - t0) / 1000);
}


interface NodeRun {
  push(id: string, frame: Buffer): Promise<void>;
  /** Resolves when the result of frame `id` reached the subscriber (or, without MQTT, was decided). */
  published(id: string): Promise<void>;
  stop(): Promise<{ results: number; decided: number }>;
}

interface NodeOptions {
  /** Overrides the profile's micro-batch wait. */
  maxWaitMs?: number;
  /** false = no MQTT at all; otherwise the outbox's SQLite synchronous mode (`full`, the default, fsyncs every result). */
  mqtt?: false | 'full' | 'normal';
  dashboard?: boolean;
}

/** Node variants measured, each against the floor. */
const THROUGHPUT_CASES: Array<{ name: string; options: NodeOptions }> = [
  { name: 'node: audit, no MQTT', options: { mqtt: false } },
  { name: 'node: audit + MQTT (outbox full)', options: {} },
  { name: 'node: audit + MQTT (outbox normal)', options: { mqtt: 'normal' } },
  { name: 'node: audit + MQTT (outbox normal) + dashboard', options: { mqtt: 'normal', dashboard: true } },
];
const LATENCY_CASES: Array<{ name: string; options: NodeOptions }> = [
  { name: 'node (defaults)', options: {} },
  { name: 'node, no batch wait', options: { maxWaitMs: 0 } },
  { name: 'node, no batch wait, outbox normal', options: { maxWaitMs: 0, mqtt: 'normal' } },
  // Decided rather than published: the node's own share of the latency, without the MQTT hops to the subscriber.
  { name: 'node (defaults), no MQTT: until decided', options: { mqtt: false } },
];

/** A real node (audit log; outbox, embedded aedes broker and an independent subscriber unless `mqtt: false`) fed by a push source. */
async function startNode(set: FrameSet, options: NodeOptions): Promise<NodeRun> {
  const dir = join(tmp.path, `run-${++runs}`);
  const camera = new PushSource('bench-camera');
  const { node, broker, transport } = await createEdgeNode(
    parseNodeConfig({
      model: BUNDLED_MODEL,
      threads: THREADS,
      audit: { file: join(dir, 'audit.db') },
      ...(options.mqtt === false
        ? {}
        : { mqtt: { embeddedBroker: { port: 0 }, site: 'bench', device: 'node', outbox: { path: join(dir, 'outbox.db'), synchronous: options.mqtt ?? 'full' } } }),
      ...(options.maxWaitMs === undefined ? {} : { batch: { maxWaitMs: options.maxWaitMs } }),
    }),
    { extraSources: [{ source: camera, preprocess: set.preprocess }], logger: silentLogger },
  );
  const dashboard = options.dashboard ? await startDashboard(node, { port: 0, auditFile: join(dir, 'audit.db') }) : undefined;
  const waiting = new Map<string, () => void>();
  const arrived = new Set<string>();
  const mark = (id: string) => {
    arrived.add(id);
    waiting.get(id)?.();
  };
  const subscriber = broker && transport ? await mqtt.connectAsync(broker.url, { clientId: `bench-sub-${runs}` }) : undefined;
  if (subscriber) {
    await subscriber.subscribeAsync(transport!.topics.result, { qos: 1 });
    subscriber.on('message', (_topic, payload) => mark((JSON.parse(payload.toString()) as { frameId: string }).frameId));
  } else {
    node.on('decision', (frame) => mark(frame.id));
  }
  const running = node.run();
  return {
    push: async (id, frame) => void (await camera.push({ id, bytes: frame })),
    published: (id) => (arrived.has(id) ? Promise.resolve() : new Promise((resolve) => waiting.set(id, resolve))),
    async stop() {
      camera.end();
      await running;
      await node.stop();
      await dashboard?.close();
      await subscriber?.endAsync();
      return { results: arrived.size, decided: node.snapshot().totals.decided };
    },
  };
}

async function nodeThroughput(set: FrameSet, options: NodeOptions): Promise<number> {
  const run = await startNode(set, options);
  const ids = set.frames.map((_, i) => `${set.name}-${i}`);
  const t0 = performance.now();
  const pushing = (async () => {
    for (let i = 0; i < ids.length; i++) await run.push(ids[i], set.frames[i]);
  })();
  await Promise.all([pushing, ...ids.map((id) => run.published(id))]);
  const fps = ids.length / ((performance.now() - t0) / 1000);
  const { results, decided } = await run.stop();
  if (results !== ids.length || decided !== ids.length) throw new Error(`expected ${ids.length} results, found ${results} published and ${decided} decided`);
  return fps;
}

/**
 * One frame at a time, paired: each frame goes through the floor and through every node in turn (the first in
 * turn rotating), so they all see the machine in the same state; on a shared machine, whose speed drifts by tens
 * of percent between seconds, runs of one case after another measured the drift as much as the node.
 */
async function latencies(engine: Engine, set: FrameSet, count: number): Promise<Map<string, number[]>> {
  const pre = new Preprocessor(imageInputOf(engine.manifest), set.preprocess);
  const floor = async (frame: Buffer) => void (await engine.infer(await pre.toTensor(frame)));
  const nodes = await Promise.all(LATENCY_CASES.map((c) => startNode(set, c.options)));
  const cases: Array<{ name: string; run: (frame: Buffer, i: number) => Promise<void> }> = [
    { name: 'floor', run: floor },
    ...LATENCY_CASES.map((c, k) => ({
      name: c.name,
      run: async (frame: Buffer, i: number) => {
        const id = `${set.name}-lat-${i}`;
        await nodes[k].push(id, frame);
        await nodes[k].published(id);
      },
    })),
  ];
  const out = new Map(cases.map((c): [string, number[]] => [c.name, []]));
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < cases.length; j++) {
      const c = cases[(i + j) % cases.length];
      const t0 = performance.now();
      await c.run(set.frames[i % set.frames.length], i);
      out.get(c.name)!.push((performance.now() - t0) * 1000);
    }
  }
  for (const node of nodes) await node.stop();
  return out;
}

const ms = (us: number) => us / 1000;

async function main(): Promise<void> {
  const profile: DeviceProfile = await resolveProfile('auto', silentLogger);
  printHeader('pipeline: edge node end to end vs preprocessing + engine alone', {
    profile: `${profile.name} (micro-batch ${profile.batch.maxSize}, wait ${profile.batch.maxWaitMs} ms)`,
    'ort threads': String(THREADS),
    rounds: String(ROUNDS),
  });
  const pngs = samples();
  const jpegs = await Promise.all(pngs.map(sceneJpeg));
  console.log(`frames: ${pngs.length} samples; JPEG scene ${(jpegs.reduce((a, b) => a + b.length, 0) / jpegs.length / 1024).toFixed(1)} KiB on average, ROI ${JSON.stringify(ROI)}`);
  const sets: FrameSet[] = [
    { name: 'png-28x28', frames: repeat(pngs, PNG_FRAMES), preprocess: {} },
    { name: 'jpeg-640x480-roi', frames: repeat(jpegs, JPEG_FRAMES), preprocess: { roi: ROI } },
  ];
  const engine = await Engine.load(BUNDLED_MODEL, { profile, threads: { intraOp: THREADS }, logger: silentLogger });

  for (const set of sets) {
    const fps = new Map<string, number[]>([['floor', []], ...THROUGHPUT_CASES.map((c): [string, number[]] => [c.name, []])]);
    const lat = new Map<string, number[]>([['floor', []], ...LATENCY_CASES.map((c): [string, number[]] => [c.name, []])]);
    // Rounds alternate the cases, so background load hits them alike.
    for (let r = 0; r < ROUNDS; r++) {
      process.stderr.write(`${set.name}: round ${r + 1}/${ROUNDS}\n`);
      fps.get('floor')!.push(await floorThroughput(engine, set, profile.batch.maxSize));
      for (const c of THROUGHPUT_CASES) fps.get(c.name)!.push(await nodeThroughput(set, c.options));
      for (const [name, xs] of await latencies(engine, set, LATENCY_FRAMES)) lat.get(name)!.push(...xs);
    }
    // Wall time per frame, so the ratio to the floor is the node's overhead (the aim is ≤ 1.15).
    printComparison(
      `${set.name}: throughput, ${set.frames.length} frames pushed as fast as the node takes them`,
      [...fps].map(([name, xs]) => ({ name, value: 1e6 / median(xs), unit: 'µs/frame', note: `${median(xs).toFixed(0)} frames/s, median of ${xs.map((x) => x.toFixed(0)).join(', ')}` })),
      'floor',
    );
    for (const p of [50, 99]) {
      printComparison(
        `${set.name}: latency p${p}, one frame at a time (received -> decision published)`,
        [...lat].map(([name, xs]) => ({ name, value: ms(percentile(xs, p)), unit: 'ms', note: `${xs.length} frames` })),
        'floor',
      );
    }
  }
  await engine.dispose();
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => tmp.cleanup());
