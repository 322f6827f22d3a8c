#!/usr/bin/env node
// Factory helper: decodes image files through the SDK's own preprocessing (src/ingest/preprocess.ts: sharp, EXIF
// orientation, the input's ROI, resize, colorspace, libjpeg-turbo's scaled decode for JPEGs), so the model trains on
// exactly the pixels a device will feed it.
//   node decode.js SPEC.json   SPEC = { input: <manifest input spec>, files: [path...], out: PIXELS_FILE }
// Writes the uint8 pixels of every decoded file, one after the other (H x W x C interleaved, RGB order), to `out`,
// and prints { decoded: [index...], rejected: [{ index, code, message }] } on stdout.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const CONCURRENCY = 8;

/** The SDK's preprocessing: the TypeScript sources in a checkout (through tsx), the compiled dist/ in an install. */
function loadPreprocessor() {
  const source = path.join(ROOT, 'src', 'ingest', 'preprocess.ts');
  if (fs.existsSync(source)) {
    require('tsx/cjs/api').register();
    return require(source).Preprocessor;
  }
  return require(path.join(ROOT, 'dist', 'ingest', 'preprocess.js')).Preprocessor;
}

async function main(specFile) {
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
  const Preprocessor = loadPreprocessor();
  const pre = new Preprocessor(spec.input);
  const size = spec.input.channels * spec.input.height * spec.input.width;
  const pixels = new Array(spec.files.length);
  const rejected = [];
  let next = 0;
  async function worker() {
    while (next < spec.files.length) {
      const index = next++;
      try {
        pixels[index] = await pre.toPixels(await fs.promises.readFile(spec.files[index]));
        if (pixels[index].length !== size) throw Object.assign(new Error(`expected ${size} bytes, found ${pixels[index].length}`), { code: 'E_INTERNAL' });
      } catch (err) {
        pixels[index] = undefined;
        rejected.push({ index, code: err.code ?? 'E_FRAME_READ', message: err.message });
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const decoded = [];
  const fd = fs.openSync(spec.out, 'w');
  try {
    pixels.forEach((p, index) => {
      if (!p) return;
      fs.writeSync(fd, p);
      decoded.push(index);
    });
  } finally {
    fs.closeSync(fd);
  }
  rejected.sort((a, b) => a.index - b.index);
  return { decoded, rejected };
}

if (!process.argv[2]) {
  console.error('usage: node decode.js SPEC.json');
  process.exit(1);
}
main(process.argv[2]).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.stack ?? e.message); process.exit(1); });
