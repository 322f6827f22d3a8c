/**
 * Anomaly benchmark, one run, side by side on the Fashion-MNIST test images (batch 1, one thread): the shipped
 * line-anomaly SGMoE at its operating point (base early exit, else the top-1 expert) vs the same with the expert
 * always run vs the one global model of the factory's baselines (trunk + one Gaussian on all features).
 *
 *   npx tsx scripts/bench/anomaly.ts [--model DIR] [--frames N]
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { Engine } from '../../src/engine/engine';
import { loadPackage } from '../../src/model/package';
import { loadTestSplit, testTensors } from './fashion-mnist';
import { median, printComparison, printHeader, timeRuns, type Row } from './lib';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(__dirname, '../../models/fashion-line-anomaly') },
    frames: { type: 'string', default: '1000' },
  },
});
const NEVER_EXIT = -1e9; // an early-exit threshold below every base score: the expert always runs

async function main(): Promise<void> {
  const frames = Number(args.frames);
  printHeader('anomaly: time per frame at the operating point vs always-expert vs the global model', { model: args.model });
  const pkg = await loadPackage(args.model);
  const input = pkg.manifest.input;
  if (input.kind !== 'image') throw new Error(`${args.model} takes ${input.kind} input: this benchmark needs an image package`);
  const tensors = await testTensors(input, loadTestSplit(frames));
  const engine = await Engine.load(pkg, { threads: { intraOp: 1, interOp: 1 } });
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' };
  const trunk = await ort.InferenceSession.create(join(args.model, pkg.manifest.parts.trunk.file), options);
  const global = await ort.InferenceSession.create(join(args.model, 'baselines', 'global.onnx'), options);
  const { channels, height, width } = input;

  const rows: Row[] = [];
  let i = 0;
  const next = () => tensors[i++ % tensors.length];
  const shipped = engine.getSettings().threshold;
  for (const [name, threshold] of [['sgmoe, operating point', shipped], ['sgmoe, expert always', NEVER_EXIT]] as const) {
    engine.configure({ threshold });
    let routed = 0;
    i = 0;
    const times = await timeRuns(async () => {
      const d = await engine.infer(next());
      if (!d.earlyExit) routed++;
    }, frames);
    rows.push({ name, value: median(times), unit: 'µs/frame', note: `expert on ${((100 * routed) / (frames + Math.ceil(frames / 10))).toFixed(1)}% of frames` });
  }
  i = 0;
  const globalTimes = await timeRuns(async () => {
    const image = new ort.Tensor('float32', next(), [1, channels, height, width]);
    const { features } = await trunk.run({ image });
    await global.run({ features });
  }, frames);
  rows.push({ name: 'global model (trunk + one Gaussian)', value: median(globalTimes), unit: 'µs/frame', note: 'raw sessions, no engine' });
  printComparison(`median time per frame, ${frames} test images, batch 1, 1 thread`, rows, 'global model (trunk + one Gaussian)');
  await engine.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
