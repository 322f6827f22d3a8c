/**
 * Real time for vibration: windows per second through the node (blocks in, windows cut, engine, audit log, MQTT
 * outbox to an embedded broker) against the engine alone on the same windows, and the margin over one 3-axis
 * 25.6 kHz stream (the package's sample rate / hop windows per second).
 *
 *   npx tsx scripts/bench/signal.ts [--model models/bearing-sgmoe] [--seconds 30] [--threads 1]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../../src/engine/engine';
import { framesFor } from '../../src/ingest/kinds';
import { parseWav } from '../../src/ingest/kinds/signal/wav';
import { PushSource } from '../../src/ingest/sources/push';
import { silentLogger } from '../../src/log';
import { loadPackage } from '../../src/model/package';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { printComparison, printHeader } from './lib';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(__dirname, '..', '..', 'models', 'bearing-sgmoe') },
    seconds: { type: 'string', default: '30' },
    threads: { type: 'string', default: '1' },
  },
});
const BLOCK_SECONDS = 0.1;

/** A stream of `seconds` of samples made of the package's sample windows back to back, in blocks of 0.1 s. */
function streamOf(dir: string, sampleRate: number, seconds: number): Float32Array[][] {
  const samples = readdirSync(join(dir, 'samples'))
    .filter((f) => f.endsWith('.wav'))
    .map((f) => parseWav(readFileSync(join(dir, 'samples', f)), f).samples);
  const total = Math.round(seconds * sampleRate);
  const block = Math.round(BLOCK_SECONDS * sampleRate);
  const channels = samples[0].length;
  const stream = Array.from({ length: channels }, () => new Float32Array(total));
  for (let at = 0, i = 0; at < total; i++) {
    const s = samples[i % samples.length];
    const n = Math.min(s[0].length, total - at);
    for (let c = 0; c < channels; c++) stream[c].set(s[c].subarray(0, n), at);
    at += n;
  }
  const blocks: Float32Array[][] = [];
  for (let at = 0; at < total; at += block) blocks.push(stream.map((c) => c.subarray(at, Math.min(total, at + block))));
  return blocks;
}

/** The documented binary block (docs/signal-blocks.md). */
function binaryBlock(ts: number, rate: number, data: Float32Array[]): Buffer {
  const n = data[0].length;
  const out = Buffer.alloc(32 + n * data.length * 4);
  out.write('SGSB', 0, 'latin1');
  out.writeUInt8(1, 4);
  out.writeUInt8(data.length, 5);
  out.writeDoubleLE(ts, 8);
  out.writeDoubleLE(rate, 16);
  for (let i = 0; i < n; i++) for (let c = 0; c < data.length; c++) out.writeFloatLE(data[c][i], 32 + 4 * (i * data.length + c));
  return out;
}

async function main(): Promise<void> {
  const threads = Number(args.threads);
  const pkg = await loadPackage(args.model!);
  const input = pkg.manifest.input;
  if (input.kind !== 'signal') throw new Error(`${args.model} is not a signal package`);
  printHeader('signal: windows per second, node vs engine alone', { model: `${pkg.manifest.name} ${pkg.manifest.version}`, threads: String(threads) });
  const blocks = streamOf(args.model!, input.sampleRate, Number(args.seconds));
  const totalSamples = blocks.reduce((n, b) => n + b[0].length, 0);
  const windows = 1 + Math.floor((totalSamples - input.window) / input.hop);
  const required = input.sampleRate / input.hop;

  // Engine alone: the same windows, cut beforehand, in batches of 8.
  const engine = await Engine.load(pkg, { threads: { intraOp: threads, interOp: 1 } });
  const flat = blocks[0].map((_, c) => {
    const all = new Float32Array(totalSamples);
    let at = 0;
    for (const b of blocks) all.set(b[c], (at += b[c].length) - b[c].length);
    return all;
  });
  const tensors = Array.from({ length: windows }, (_, w) => {
    const t = new Float32Array(input.channels * input.window);
    for (let c = 0; c < input.channels; c++) t.set(flat[c].subarray(w * input.hop, w * input.hop + input.window), c * input.window);
    return t;
  });
  await engine.inferBatch(tensors.slice(0, 8));
  let t0 = performance.now();
  for (let i = 0; i < tensors.length; i += 8) await engine.inferBatch(tensors.slice(i, i + 8));
  const engineRate = windows / ((performance.now() - t0) / 1000);
  await engine.dispose();

  // Through the node: binary blocks pushed as fast as it takes them, audit log and MQTT outbox on.
  const dir = mkdtempSync(join(tmpdir(), 'sgmoe-bench-signal-'));
  try {
    const push = new PushSource('bench-stream');
    const { node } = await createEdgeNode(
      parseNodeConfig({
        model: args.model,
        threads,
        audit: { file: join(dir, 'audit.db') },
        mqtt: { embeddedBroker: { port: 0 }, site: 'bench', device: 'signal', outbox: { path: join(dir, 'outbox.db') } },
      }),
      { extraSources: [{ source: framesFor(push, input), preprocess: {} }], logger: silentLogger },
    );
    let decided = 0;
    let wake: () => void = () => {};
    node.on('decision', () => {
      decided++;
      wake();
    });
    const running = node.run();
    const start = Date.now();
    t0 = performance.now();
    let at = 0;
    for (const b of blocks) {
      // As fast as the node takes them, and no faster: a live stream's windows beyond the source's queue (64) would
      // be dropped (drop-oldest), and the run would measure drops rather than decisions.
      const cut = at < input.window ? 0 : 1 + Math.floor((at - input.window) / input.hop);
      while (cut - decided > 32) await new Promise<void>((r) => (wake = r));
      await push.push(binaryBlock(start + (at * 1000) / input.sampleRate, input.sampleRate, b));
      at += b[0].length;
    }
    while (decided < windows) await new Promise<void>((r) => (wake = r));
    const nodeRate = windows / ((performance.now() - t0) / 1000);
    push.end();
    await node.stop();
    await running;

    printComparison(
      `${windows} windows (${args.seconds} s of a ${input.channels}-axis ${input.sampleRate / 1000} kHz stream, blocks of ${BLOCK_SECONDS * 1000} ms)`,
      [
        { name: 'real time: one stream', value: required, unit: 'windows/s', note: `sample rate / hop = ${input.sampleRate} / ${input.hop}` },
        { name: 'engine alone', value: engineRate, unit: 'windows/s', note: 'batches of 8, windows cut beforehand' },
        { name: 'node', value: nodeRate, unit: 'windows/s', note: 'blocks -> windows -> engine -> audit + MQTT outbox' },
      ],
      'real time: one stream',
      true,
    );
    console.log(`\nnode / engine alone: ${(nodeRate / engineRate).toFixed(3)}; one node keeps up with ${(nodeRate / required).toFixed(1)} such streams (margin x${(nodeRate / required).toFixed(1)})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
