#!/usr/bin/env node
// Factory helper run with onnxruntime-node (there is no onnxruntime for Python here), one intra-op thread:
//   node ort.js latency SPEC.json   per-sample latency (batch 1) of single-file models and of SGMoE packages
//   node ort.js parity DIR          every part of a package on its selftest inputs vs the stored PyTorch outputs,
//                                   within the selftest's tolerance as `sgmoe model verify` checks it
// Prints one JSON object on stdout.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

const OPTIONS = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
const open = (file) => ort.InferenceSession.create(file, OPTIONS);
const WARMUP = 20; // first images of each model, not timed
const tensor = (data, dims) => new ort.Tensor('float32', Float32Array.from(data), dims);

async function run(session, input) {
  const out = await session.run({ [session.inputNames[0]]: input });
  return out[session.outputNames[0]];
}

function maxSoftmax(logits) {
  const m = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - m));
  return Math.max(...e) / e.reduce((a, b) => a + b, 0);
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** One sample through an SGMoE: trunk, base and gate always; the top-1 expert only below the threshold. */
function sgmoeRunner(parts, threshold) {
  return async (image) => {
    const features = await run(parts.trunk, image);
    const logits = await run(parts.base, features);
    const gate = await run(parts.gate, features);
    if (maxSoftmax(logits.data) >= threshold) return false;
    await run(parts.experts[argmax(gate.data)], features);
    return true;
  };
}

async function latency(specFile) {
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
  const raw = fs.readFileSync(spec.inputs);
  const pixels = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const [c, h, w] = spec.shape;
  const images = [];
  for (let i = 0; i < spec.count; i++) images.push(tensor(pixels.subarray(i * c * h * w, (i + 1) * c * h * w), [1, c, h, w]));
  const runners = [];
  for (const model of spec.models) {
    if (model.file) {
      const session = await open(model.file);
      runners.push(async (image) => { await run(session, image); return false; });
    } else {
      const parts = { trunk: await open(model.trunk), base: await open(model.base), gate: await open(model.gate),
                      experts: await Promise.all(model.experts.map(open)) };
      runners.push(sgmoeRunner(parts, model.threshold));
    }
  }
  // Models take turns on each image, so background load on the machine affects them alike.
  const times = spec.models.map(() => []);
  const routed = spec.models.map(() => 0);
  for (const [i, image] of images.entries()) {
    for (const [m, runner] of runners.entries()) {
      const t0 = process.hrtime.bigint();
      const toExpert = await runner(image);
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (i < WARMUP) continue;
      times[m].push(us);
      if (toExpert) routed[m]++;
    }
  }
  const result = {};
  for (const [m, model] of spec.models.entries()) {
    const sorted = [...times[m]].sort((a, b) => a - b);
    result[model.name] = { meanUs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
                           p50Us: sorted[Math.floor(sorted.length / 2)], p95Us: sorted[Math.floor(sorted.length * 0.95)],
                           samples: sorted.length, expertRate: routed[m] / sorted.length };
  }
  return result;
}

/** numpy.allclose's rule, as the SDK's self-test (src/engine/selftest-run.ts): the share of its tolerance a
 * difference uses, > 1 outside. */
const share = (got, want, { absolute, relative }) => Math.abs(got - want) / (absolute + relative * Math.abs(want));

/** Every output of a part by name, with the golden values selftest.json holds for it (`golden(name)`). */
async function outputs(session, input, golden) {
  const out = await session.run({ [session.inputNames[0]]: input });
  return session.outputNames.map((name) => ({ name, data: out[name].data, want: golden(name) ?? [], tensor: out[name] }));
}

/** Every part of a package (image or signal, any task) on its selftest inputs against the stored PyTorch outputs,
 * compared as `sgmoe model verify` compares them. */
async function parity(dir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const selftest = JSON.parse(fs.readFileSync(path.join(dir, manifest.selftest), 'utf8'));
  const tolerance = { absolute: selftest.tolerance, relative: selftest.relativeTolerance ?? 0 };
  const at = (part) => open(path.join(dir, part.file));
  const [trunk, base, gate] = [await at(manifest.parts.trunk), await at(manifest.parts.base), await at(manifest.parts.gate)];
  const experts = await Promise.all(manifest.parts.experts.map(at));
  const { kind = 'image', channels, height, width, window } = manifest.input;
  const dims = kind === 'signal' ? [1, channels, window] : [1, channels, height, width];
  let worst = 0;
  let worstShare = 0;
  const failures = [];
  for (const c of selftest.cases) {
    const byName = (name) => c.outputs[name];
    const [features] = await outputs(trunk, tensor(c.input, dims), byName);
    const checked = [['trunk', features], ...(await outputs(base, features.tensor, byName)).map((o) => ['base', o]),
                     ...(await outputs(gate, features.tensor, byName)).map((o) => ['gate', o])];
    for (const [e, expert] of experts.entries()) {
      const golden = c.outputs.experts[e];
      for (const o of await outputs(expert, features.tensor, (name) => (Array.isArray(golden) ? golden : golden[name]))) checked.push([`expert ${e}`, o]);
    }
    for (const [part, { name, data, want }] of checked) {
      let over = data.length === want.length ? 0 : Infinity;
      for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(data[i] - want[i]));
        const s = share(data[i], want[i], tolerance);
        over = Number.isNaN(s) ? Infinity : Math.max(over, s);
      }
      worstShare = Math.max(worstShare, over);
      if (over > 1) failures.push(`${c.id} ${part} ${name}: ${over.toFixed(1)}x its tolerance`);
    }
  }
  return { cases: selftest.cases.length, maxAbsDiff: worst, worstShare, tolerance, ok: failures.length === 0, failures: failures.slice(0, 10) };
}

const [command, arg] = process.argv.slice(2);
const commands = { latency, parity };
if (!commands[command] || !arg) {
  console.error('usage: node ort.js latency SPEC.json | parity PACKAGE_DIR');
  process.exit(1);
}
commands[command](arg).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });
