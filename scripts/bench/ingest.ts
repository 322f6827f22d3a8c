/**
 * Preprocessing time per frame (sharp decode -> model tensor) against the bare sharp pipeline that only
 * decodes, resizes and writes raw pixels: the floor any preprocessing pays. Cases: a 28x28 PNG, a 640x480
 * JPEG, a 1920x1080 JPEG with an ROI, and a 12-megapixel JPEG (shrink-on-load). Also: sharp's global
 * concurrency and cache settings, measured rather than guessed.
 *
 *   npx tsx scripts/bench/ingest.ts [--quick]
 */
import sharp from 'sharp';
import { Preprocessor, type PreprocessOptions } from '../../src/ingest';
import type { InputSpec } from '../../src/model';
import { median, printComparison, printHeader, timeRuns, type Row } from './lib';

const SPEC: InputSpec = { kind: 'image', name: 'image', channels: 1, height: 28, width: 28, colorspace: 'gray', mean: [0.286], std: [0.353], layout: 'NCHW', invert: false };
const quick = process.argv.includes('--quick');

/** A photo-like gray frame (smooth gradients and texture, so JPEG sizes are realistic). */
async function frame(width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const v = 128 + 60 * Math.sin(x / 37) * Math.cos(y / 23) + ((x * 7 + y * 13) % 17);
      data[i] = v;
      data[i + 1] = (v + x / 8) & 255;
      data[i + 2] = (v + y / 8) & 255;
    }
  }
  const image = sharp(data, { raw: { width, height, channels: 3 } });
  return format === 'png' ? image.greyscale().png().toBuffer() : image.jpeg({ quality: 90 }).toBuffer();
}

interface Case {
  name: string;
  bytes: Buffer;
  options: PreprocessOptions;
  iterations: number;
}

/** Alternates the contenders in rounds so background load hits them alike; returns each one's median in us. */
async function compare(contenders: Record<string, () => Promise<unknown>>, iterations: number): Promise<Record<string, number>> {
  const rounds = 10;
  const runs: Record<string, number[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(contenders)) runs[name].push(...(await timeRuns(fn, Math.ceil(iterations / rounds))));
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
}

async function main(): Promise<void> {
  printHeader('ingest: preprocessing per frame vs the bare sharp pipeline', { sharp: sharp.versions.sharp ?? 'n/a', libvips: sharp.versions.vips, mode: quick ? 'quick' : 'full' });
  const scale = quick ? 0.2 : 1;
  const roi = { x: 560, y: 140, width: 800, height: 800 };
  const cases: Case[] = [
    { name: '28x28 PNG', bytes: await frame(28, 28, 'png'), options: {}, iterations: 3000 * scale },
    { name: '640x480 JPEG', bytes: await frame(640, 480, 'jpeg'), options: {}, iterations: 600 * scale },
    { name: '1920x1080 JPEG + ROI 800x800', bytes: await frame(1920, 1080, 'jpeg'), options: { roi }, iterations: 300 * scale },
    { name: '4000x3000 JPEG (12 MP)', bytes: await frame(4000, 3000, 'jpeg'), options: {}, iterations: 60 * scale },
  ];

  const settings: Array<{ label: string; concurrency: number; cache: boolean }> = [
    { label: `sharp defaults (concurrency ${sharp.concurrency()}, cache on)`, concurrency: sharp.concurrency(), cache: true },
    { label: 'concurrency 1, cache off', concurrency: 1, cache: false },
  ];
  for (const setting of settings) {
    sharp.concurrency(setting.concurrency);
    sharp.cache(setting.cache);
    console.log(`\n# ${setting.label}`);
    for (const c of cases) {
      const pre = new Preprocessor(SPEC, c.options);
      const contenders: Record<string, () => Promise<unknown>> = {
        'floor: decode + resize + raw': () => sharp(c.bytes).greyscale().resize(28, 28).raw().toBuffer(),
        'Preprocessor.toTensor': () => pre.toTensor(c.bytes),
      };
      if (c.options.roi) {
        contenders['naive ROI: extract then resize'] = () =>
          sharp(c.bytes).extract({ left: roi.x, top: roi.y, width: roi.width, height: roi.height }).greyscale().resize(28, 28).raw().toBuffer();
      }
      if (c.name.includes('12 MP')) contenders['full decode, no shrink-on-load'] = () => sharp(c.bytes).greyscale().raw().toBuffer();
      const medians = await compare(contenders, c.iterations);
      const rows: Row[] = Object.entries(medians).map(([name, value]) => ({ name, value, unit: 'us' }));
      printComparison(`${c.name} (${(c.bytes.length / 1024).toFixed(0)} KiB), median per frame`, rows, 'floor: decode + resize + raw');
    }

    // Throughput: 16 frames of 640x480 at once (the batch form), frames per second.
    const pre = new Preprocessor(SPEC);
    const batch = Array.from({ length: 16 }, () => cases[1].bytes);
    const medians = await compare(
      {
        'floor: 16 x decode + resize + raw, in parallel': () => Promise.all(batch.map((b) => sharp(b).greyscale().resize(28, 28).raw().toBuffer())),
        'Preprocessor.toBatch(16)': () => pre.toBatch(batch),
      },
      Math.max(10, 100 * scale),
    );
    printComparison(
      '640x480 JPEG, 16 frames in parallel: frames per second',
      Object.entries(medians).map(([name, us]) => ({ name, value: 16 / (us / 1e6), unit: 'fps' })),
      'floor: 16 x decode + resize + raw, in parallel',
      true,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
