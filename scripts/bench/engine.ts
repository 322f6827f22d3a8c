/**
 * Engine benchmark, one run, side by side:
 *   1. the floor — raw onnxruntime-node calls of the same parts in the same order — vs engine.inferBatch
 *      at batch 1 and 16 (overhead ratio);
 *   2. SGMoE at its operating point vs always the top-1 expert vs base only vs the factory's dense baseline:
 *      time per frame (batch 1) and accuracy on the test split;
 *   3. throughput at batch 1, 8 and 32;
 *   4. the same SGMoE in PyTorch eager on the CPU (scripts/bench/engine_torch.py), batch 1 and 16.
 *
 *   npm run bench:engine -- [--model DIR] [--threads N] [--frames N]
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { argmax, baseStage, routeExperts, softmax } from '../../src/engine/decide';
import { Engine } from '../../src/engine/engine';
import { imageInputOf } from '../../src/model/manifest';
import { loadPackage, type ModelPackage } from '../../src/model/package';
import { loadTestSplit, testTensors } from './fashion-mnist';
import { median, printComparison, printHeader, type Row } from './lib';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(__dirname, '../../models/fashion-sgmoe') },
    threads: { type: 'string', default: '1' },
    frames: { type: 'string', default: '2000' },
  },
});
const threads = Number(args.threads);
const timedFrames = Number(args.frames);

type Session = ort.InferenceSession;

/** The floor: the parts as bare sessions, run in the engine's order with routing computed inline. */
class RawParts {
  private constructor(
    private readonly trunk: Session,
    private readonly base: Session,
    private readonly gate: Session,
    private readonly experts: Session[],
    private readonly featureShape: number[],
    private readonly threshold: number,
  ) {}

  static async open(pkg: ModelPackage, threshold: number): Promise<RawParts> {
    const open = (p: string) => ort.InferenceSession.create(p, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    const trunk = await open(pkg.trunk.path);
    const experts = await Promise.all(pkg.experts.map((e) => open(e.path)));
    const meta = trunk.outputMetadata[0];
    const featureShape = (meta.isTensor ? meta.shape.slice(1) : []) as number[];
    return new RawParts(trunk, await open(pkg.base.path), await open(pkg.gate.path), experts, featureShape, threshold);
  }

  async run(batch: Float32Array[], dims: number[]): Promise<void> {
    const n = batch.length;
    const input = new Float32Array(n * batch[0].length);
    batch.forEach((t, i) => input.set(t, i * t.length));
    const features = (await this.trunk.run({ image: new ort.Tensor('float32', input, [n, ...dims]) })).features.data as Float32Array;
    const fsize = features.length / n;
    const tensor = (rows: number[]) => {
      const data = new Float32Array(rows.length * fsize);
      rows.forEach((r, i) => data.set(features.subarray(r * fsize, (r + 1) * fsize), i * fsize));
      return new ort.Tensor('float32', data, [rows.length, ...this.featureShape]);
    };
    const all = [...Array(n).keys()];
    const logits = (await this.base.run({ features: tensor(all) })).logits.data as Float32Array;
    const L = logits.length / n;
    const routed = all.filter((i) => !baseStage(logits.subarray(i * L, (i + 1) * L), this.threshold).earlyExit);
    if (routed.length === 0) return;
    const gate = (await this.gate.run({ features: tensor(routed) })).gate_logits.data as Float32Array;
    const K = this.experts.length;
    const chosen = routed.map((_, r) => routeExperts(softmax(gate.subarray(r * K, (r + 1) * K)), 1).experts[0]);
    for (let e = 0; e < K; e++) {
      const rows = routed.filter((_, r) => chosen[r] === e);
      if (rows.length > 0) await this.experts[e].run({ features: tensor(rows) });
    }
  }
}

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Microseconds per frame of `fn` over `frames` in batches; best of `rounds` medians to damp noise on a shared box. */
async function perFrameUs(frames: Float32Array[], batch: number, fn: (b: Float32Array[]) => Promise<unknown>): Promise<number> {
  const groups = batches(frames, batch);
  for (const g of groups.slice(0, 20)) await fn(g);
  const perBatch: number[] = [];
  for (const g of groups) {
    const t0 = process.hrtime.bigint();
    await fn(g);
    perBatch.push(Number(process.hrtime.bigint() - t0) / 1000 / g.length);
  }
  return median(perBatch);
}

async function main(): Promise<void> {
  const pkg = await loadPackage(args.model!);
  const { manifest } = pkg;
  printHeader('engine', { model: `${manifest.name} ${manifest.version}`, threads: String(threads) });
  const split = loadTestSplit();
  const input = imageInputOf(manifest);
  const tensors = await testTensors(input, split);
  const timed = tensors.slice(0, timedFrames);
  const dims = [input.channels, input.height, input.width];
  const engine = await Engine.load(pkg, { threads: { intraOp: threads, interOp: 1 } });
  const raw = await RawParts.open(pkg, manifest.routing.earlyExit.threshold);

  // 1. Floor vs engine, interleaved so drift on a shared machine hits both alike.
  const floorRows: Row[] = [];
  for (const batch of [1, 16]) {
    const r: number[] = [];
    const e: number[] = [];
    for (let round = 0; round < 3; round++) {
      r.push(await perFrameUs(timed, batch, (b) => raw.run(b, dims)));
      e.push(await perFrameUs(timed, batch, (b) => engine.inferBatch(b)));
    }
    floorRows.push({ name: `raw onnxruntime-node, batch ${batch}`, value: Math.min(...r), unit: 'µs/frame' });
    floorRows.push({ name: `engine.inferBatch, batch ${batch}`, value: Math.min(...e), unit: 'µs/frame' });
  }
  printComparison('overhead over the floor (batch 1)', floorRows.slice(0, 2), floorRows[0].name);
  printComparison('overhead over the floor (batch 16)', floorRows.slice(2), floorRows[2].name);

  // 2. Operating point vs always-expert vs base-only vs dense, time at batch 1 and accuracy on all 10,000.
  const accuracy = async (run: (b: Float32Array[]) => Promise<number[]>) => {
    let right = 0;
    for (const [i, b] of batches(tensors, 32).entries()) {
      (await run(b)).forEach((label, j) => (right += Number(label === split.labels[i * 32 + j])));
    }
    return right / tensors.length;
  };
  const modes: Array<[string, Parameters<Engine['configure']>[0]]> = [
    [`SGMoE at its operating point (threshold ${manifest.routing.earlyExit.threshold})`, { threshold: manifest.routing.earlyExit.threshold, mode: 'moe' }],
    ['SGMoE, always the top-1 expert', { threshold: 1.000001, mode: 'moe' }],
    ['base only (trunk + base branch)', { mode: 'base-only' }],
  ];
  const modeRows: Row[] = [];
  for (const [name, settings] of modes) {
    engine.configure(settings);
    const us = await perFrameUs(timed, 1, (b) => engine.inferBatch(b));
    const acc = await accuracy(async (b) => (await engine.inferBatch(b)).map((d) => d.labelIndex));
    const macs = (await engine.inferBatch(timed.slice(0, 1000))).reduce((s, d) => s + d.macs, 0) / 1000;
    modeRows.push({ name, value: us, unit: 'µs/frame', note: `accuracy ${(acc * 100).toFixed(2)}%, mean MACs ${(macs / 1e6).toFixed(2)} M` });
  }
  const dense = await ort.InferenceSession.create(join(pkg.dir, 'baselines', 'dense.onnx'), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const runDense = async (b: Float32Array[]) => {
    const input = new Float32Array(b.length * b[0].length);
    b.forEach((t, i) => input.set(t, i * t.length));
    const out = (await dense.run({ image: new ort.Tensor('float32', input, [b.length, ...dims]) })).logits.data as Float32Array;
    const L = out.length / b.length;
    return b.map((_, i) => argmax(out.subarray(i * L, (i + 1) * L)));
  };
  const denseAcc = await accuracy(runDense);
  modeRows.push({ name: 'dense baseline (equal worst-case MACs)', value: await perFrameUs(timed, 1, runDense), unit: 'µs/frame', note: `accuracy ${(denseAcc * 100).toFixed(2)}%` });
  printComparison('modes, batch 1 (accuracy on the 10,000 test images)', modeRows, modeRows[3].name);

  // 3. Throughput.
  engine.configure({ threshold: manifest.routing.earlyExit.threshold, mode: 'moe' });
  const tput: Row[] = [];
  for (const batch of [1, 8, 32]) tput.push({ name: `batch ${batch}`, value: 1e6 / (await perFrameUs(timed, batch, (b) => engine.inferBatch(b))), unit: 'frames/s' });
  printComparison('throughput at the operating point', tput, 'batch 1', true);

  // 4. PyTorch eager peer, same parts and threads, same frames.
  const torch = spawnSync('/usr/bin/python3', [join(__dirname, 'engine_torch.py'), '--model', pkg.dir, '--threads', String(threads), '--frames', String(timedFrames)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (torch.status !== 0) {
    console.log(`\n(PyTorch peer skipped: engine_torch.py exited ${torch.status})`);
  } else {
    const peer = JSON.parse(torch.stdout) as Record<string, number>;
    const rows: Row[] = [];
    for (const batch of [1, 16]) {
      rows.push({ name: `PyTorch eager, batch ${batch}`, value: peer[`batch${batch}`], unit: 'µs/frame' });
      rows.push({ name: `engine, batch ${batch}`, value: floorRows.find((r) => r.name === `engine.inferBatch, batch ${batch}`)!.value, unit: 'µs/frame' });
    }
    printComparison('vs PyTorch eager (batch 1)', rows.slice(0, 2), rows[0].name);
    printComparison('vs PyTorch eager (batch 16)', rows.slice(2), rows[2].name);
  }
  await engine.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
