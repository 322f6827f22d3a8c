#!/usr/bin/env node
// node parity.js PACKAGE_DIR: every part of a signal package on its selftest inputs in onnxruntime-node (one
// intra-op thread) against the PyTorch outputs stored in selftest.json. Prints one JSON object.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

async function main(dir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const selftest = JSON.parse(fs.readFileSync(path.join(dir, manifest.selftest), 'utf8'));
  const open = (part) => ort.InferenceSession.create(path.join(dir, part.file), { intraOpNumThreads: 1 });
  const run = async (session, tensor) => (await session.run({ [session.inputNames[0]]: tensor }))[session.outputNames[0]];
  const trunk = await open(manifest.parts.trunk);
  const heads = { logits: await open(manifest.parts.base), gate_logits: await open(manifest.parts.gate) };
  const experts = await Promise.all(manifest.parts.experts.map(open));
  const { channels, window } = manifest.input;
  let worst = 0;
  const diff = (got, want) => { for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i])); };
  for (const c of selftest.cases) {
    const features = await run(trunk, new ort.Tensor('float32', Float32Array.from(c.input), [1, channels, window]));
    diff(features.data, c.outputs.features);
    for (const [name, session] of Object.entries(heads)) diff((await run(session, features)).data, c.outputs[name]);
    for (let e = 0; e < experts.length; e++) diff((await run(experts[e], features)).data, c.outputs.experts[e]);
  }
  return { cases: selftest.cases.length, maxAbsDiff: worst, tolerance: selftest.tolerance, ok: worst <= selftest.tolerance };
}

main(process.argv[2]).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1); });
