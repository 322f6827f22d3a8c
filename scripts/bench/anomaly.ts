/**
 * Anomaly benchmark, one run, side by side on the Fashion-MNIST test images (batch 1, one thread): the shipped
 * line-anomaly SGMoE at its operating point (base early exit, else the top-1 expert) vs the same with the expert
 * always run vs the one global model of the factory's baselines (trunk + one expert-like model of all features). Every case
 * runs once over the images untimed, then once per round for BENCH_ROUNDS rounds (default 3).
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
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

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

  let i = 0;
  const next = () => tensors[i++ % tensors.length];
  const shipped = engine.getSettings().threshold;
  let routed = 0;
  const sgmoe = async () => {
    if (!(await engine.infer(next())).earlyExit) routed++;
  };
  const cases = [
    { name: 'sgmoe, operating point', threshold: shipped, run: sgmoe, routed: 0 },
    { name: 'sgmoe, expert always', threshold: NEVER_EXIT, run: sgmoe, routed: 0 },
    {
      name: 'global model (trunk + baselines/global.onnx)',
      threshold: undefined,
      run: async () => {
        const image = new ort.Tensor('float32', next(), [1, channels, height, width]);
        const { features } = await trunk.run({ image });
        await global.run({ features });
      },
      routed: 0,
    },
  ];
  // One pass of every case over the images first: every expert's session has run before anything is timed (timed
  // first and cold, the operating point once came out slower than the expert always run).
  for (const c of cases) {
    if (c.threshold !== undefined) engine.configure({ threshold: c.threshold });
    i = 0;
    for (let n = 0; n < frames; n++) await c.run();
  }
  // Then ROUNDS rounds, every case once per round, so a slow spell of the machine touches every case alike.
  const times: number[][] = cases.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [k, c] of cases.entries()) {
      if (c.threshold !== undefined) engine.configure({ threshold: c.threshold });
      i = 0;
      routed = 0;
      times[k].push(...(await timeRuns(c.run, frames, 0)));
      c.routed += routed;
    }
  }
  const rows: Row[] = cases.map((c, k) => ({
    name: c.name,
    value: median(times[k]),
    unit: 'µs/frame',
    note: k < 2 ? `expert on ${((100 * c.routed) / (frames * ROUNDS)).toFixed(1)}% of frames` : 'raw sessions, no engine',
  }));
  printComparison(`median time per frame, ${frames} test images x ${ROUNDS} rounds, batch 1, 1 thread`, rows, 'global model (trunk + baselines/global.onnx)');
  await engine.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
