/**
 * Ingest cost per frame, each case beside its floor, in one run:
 * 1. stream decode: a 1280x720 H.264 25 fps file through the video: source (ffmpeg decodes, crops, scales to
 *    28x28 gray; the frame becomes a tensor) against `ffmpeg -f null` decoding the same file: CPU per frame, fps;
 * 2. JPEG: 640x480 camera JPEGs to 28x28 gray tensors, the Preprocessor's camera path (libjpeg-turbo through
 *    koffi) and sharp against libjpeg-turbo's DCT-scaled decode in Pillow's draft mode, with where sharp's time goes;
 * 3. capacity: how many 25 fps cameras this machine's cores sustain, from the measured CPU per frame;
 * 4. sharp's other cases (PNG, ROI, 12 MP) and its global concurrency and cache settings;
 * 5. a camera frame kept as a PNG (an anomalous frame the frame store keeps, one the dashboard holds for review),
 *    beside the engine's decision of a frame: what keeping it adds.
 *
 *   npx sgmoe bench ingest [--quick] [--stream [rounds]]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { Engine } from '../../src/engine/engine';
import { Preprocessor, VideoSource, type PreprocessOptions } from '../../src/ingest';
import { pngOf } from '../../src/ingest/raw-png';
import type { InputSpec } from '../../src/model';
import { median, printComparison, printHeader, timeRuns, type Row } from './lib';

const MODEL = resolve(__dirname, '..', '..', 'models', 'fashion-sgmoe');
const TIMES_WRAPPER = join(__dirname, 'ffmpeg-times.sh');

const SPEC: InputSpec = { kind: 'image', name: 'image', channels: 1, height: 28, width: 28, colorspace: 'gray', mean: [0.286], std: [0.353], layout: 'NCHW', invert: false };
const quick = process.argv.includes('--quick');
/** `--stream [rounds]`: only the stream decode case, over more rounds (default 7). */
const streamOnly = process.argv.includes('--stream');

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

/** CPU seconds (user + system) of the last ffmpeg run through the wrapper. */
function wrapperCpuSeconds(file: string): number {
  const [user, system] = readFileSync(file, 'utf8').trim().split('\n').at(-1)!.trim().split(/\s+/).map((t) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(t);
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  });
  return user + system;
}

interface StreamRun {
  cpuUsPerFrame: number;
  fps: number;
  frames: number;
  /** The node process's share of cpuUsPerFrame (the rest is ffmpeg's). */
  nodeUsPerFrame?: number;
}

/** The floor: ffmpeg decoding the file and discarding the pictures. */
function ffmpegNull(clip: string, timesFile: string): StreamRun {
  const t0 = process.hrtime.bigint();
  const run = spawnSync(TIMES_WRAPPER, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-benchmark', '-i', clip, '-f', 'null', '-'], {
    env: { ...process.env, SGMOE_BENCH_TIMES: timesFile },
    encoding: 'utf8',
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const frames = Number(/frame=\s*(\d+)/.exec(run.stderr)?.[1] ?? NaN) || countFrames(clip);
  return { cpuUsPerFrame: (wrapperCpuSeconds(timesFile) * 1e6) / frames, fps: frames / wall, frames };
}

function countFrames(clip: string): number {
  return Number(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', clip], { encoding: 'utf8' }).trim());
}

/** The node's path without the engine: the video: source (ffmpeg child) and each frame made a tensor. CPU of both processes. */
async function throughSource(clip: string, timesFile: string, spec: InputSpec): Promise<StreamRun> {
  process.env.SGMOE_BENCH_TIMES = timesFile;
  const source = new VideoSource(clip, { once: true, input: spec, decoder: { kind: 'ffmpeg', command: TIMES_WRAPPER } });
  const pre = new Preprocessor(spec);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let frames = 0;
  for await (const frame of source) {
    await pre.toTensor(frame);
    await source.settle(frame, { status: 'decided' });
    frames++;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const node = process.cpuUsage(cpu0);
  const nodeUs = node.user + node.system;
  const cpuUs = nodeUs + wrapperCpuSeconds(timesFile) * 1e6;
  return { cpuUsPerFrame: cpuUs / frames, fps: frames / wall, frames, nodeUsPerFrame: nodeUs / frames };
}

/** A 1280x720 H.264 25 fps camera-like stream: a moving pattern with a little sensor noise, about 2.5 Mbit/s like an IP camera's main stream. */
function makeStream(dir: string, seconds: number): string {
  const clip = join(dir, 'camera-720p25.mp4');
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=1280x720:rate=25,noise=alls=4:allf=t`,
    '-t', String(seconds), '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-g', '50', '-pix_fmt', 'yuv420p', clip,
  ]);
  return clip;
}

/** 640x480 camera JPEGs (quality ~90) cut from the stream. */
function makeJpegs(dir: string, clip: string, count: number): string[] {
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', clip, '-vf', 'scale=640:480', '-frames:v', String(count), '-q:v', '3', join(dir, 'cam-%03d.jpg')]);
  return readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort().map((f) => join(dir, f));
}

/** CPU per call (all threads of this process), calls one after another over every file, `passes` times. */
async function cpuPerCall(files: Buffer[], passes: number, fn: (b: Buffer) => Promise<unknown>): Promise<number> {
  for (const b of files) await fn(b);
  const cpu0 = process.cpuUsage();
  for (let p = 0; p < passes; p++) for (const b of files) await fn(b);
  const c = process.cpuUsage(cpu0);
  return (c.user + c.system) / (passes * files.length);
}

const PILLOW = `
import io, json, sys, time
from PIL import Image
files = [open(p, 'rb').read() for p in sys.argv[2:]]
passes = int(sys.argv[1])
def gray28(b, draft):
    im = Image.open(io.BytesIO(b))
    if draft:
        im.draft('L', (28, 28))
    return im.convert('L').resize((28, 28), Image.BILINEAR).tobytes()
def full(b):
    im = Image.open(io.BytesIO(b)); im.load(); return im
out = {}
for name, fn in (('draft', lambda b: gray28(b, True)), ('nodraft', lambda b: gray28(b, False)), ('full', full)):
    for b in files: fn(b)
    t = time.process_time()
    for _ in range(passes):
        for b in files: fn(b)
    out[name] = (time.process_time() - t) / (passes * len(files)) * 1e6
print(json.dumps(out))
`;

/** Pillow (libjpeg-turbo) on the same files: DCT-scaled (draft) and full decodes, CPU per call. */
function pillow(files: string[], passes: number): { draft: number; nodraft: number; full: number } {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PILLOW, String(passes), ...files], { encoding: 'utf8' }));
}

/**
 * The video: source against its floor, alternated over rounds so background load hits both alike. On a shared
 * machine CPU per frame still moves from round to round, so each round's ratio is taken against the floor run
 * just before it, and the spread of those ratios is printed beside the best round of each.
 */
async function streamDecode(clip: string, mbits: number, timesFile: string, spec: InputSpec, rounds: number): Promise<StreamRun> {
  const floor: StreamRun[] = [];
  const ours: StreamRun[] = [];
  for (let round = 0; round < rounds; round++) {
    floor.push(ffmpegNull(clip, timesFile));
    ours.push(await throughSource(clip, timesFile, spec));
  }
  const best = (runs: StreamRun[]) => runs.reduce((a, b) => (b.cpuUsPerFrame < a.cpuUsPerFrame ? b : a));
  const [f, o] = [best(floor), best(ours)];
  const ratios = ours.map((r, i) => r.cpuUsPerFrame / floor[i].cpuUsPerFrame).sort((a, b) => a - b);
  const nodeShare = median(ours.map((r) => r.nodeUsPerFrame ?? 0));
  printComparison(
    `stream decode, 1280x720 H.264 25 fps ${mbits.toFixed(1)} Mbit/s, ${f.frames} frames: CPU per frame (ffmpeg + node), best of ${rounds} rounds`,
    [
      { name: 'floor: ffmpeg -f null', value: f.cpuUsPerFrame, unit: 'µs', note: `${f.fps.toFixed(0)} fps` },
      {
        name: 'video: source -> 28x28 gray tensor',
        value: o.cpuUsPerFrame,
        unit: 'µs',
        note: `${o.fps.toFixed(0)} fps, ${o.frames} frames; node's share ${nodeShare.toFixed(0)} µs (median)`,
      },
    ],
    'floor: ffmpeg -f null',
  );
  console.log(`per-round ratios (each against the floor run just before it): ${ratios.map((r) => r.toFixed(3)).join(' ')}; median ${median(ratios).toFixed(3)}`);
  return o;
}

async function streamAndJpeg(spec: InputSpec): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sgmoe-bench-ingest-'));
  try {
    // --stream: a 40 s clip (1000 frames), so that each run averages over more of the background load.
    const seconds = streamOnly ? 40 : quick ? 4 : 10;
    const clip = makeStream(dir, seconds);
    const mbits = (statSync(clip).size * 8) / seconds / 1e6;
    const timesFile = join(dir, 'times');
    // 1. Stream decode.
    const rounds = streamOnly ? Number(process.argv[process.argv.indexOf('--stream') + 1]) || 7 : quick ? 2 : 3;
    const o = await streamDecode(clip, mbits, timesFile, spec, rounds);
    if (streamOnly) return;

    // 2. JPEG: the same 640x480 files through sharp and through libjpeg-turbo's DCT scaling.
    const paths = makeJpegs(dir, clip, 20);
    const files = paths.map((p) => readFileSync(p));
    const passes = quick ? 5 : 20;
    const pre = new Preprocessor(spec);
    const viaSharp = new Preprocessor(spec, { roi: { x: 0, y: 0, width: 640, height: 480 } });
    const tiny = { raw: { width: 28, height: 28, channels: 1 as const } };
    const zero = Buffer.alloc(28 * 28);
    const rows: Record<string, number[]> = {};
    const add = (name: string, value: number) => (rows[name] ??= []).push(value);
    for (let round = 0; round < 3; round++) {
      const p = pillow(paths, passes);
      add('floor: libjpeg-turbo DCT-scaled (Pillow draft) -> 28x28 gray', p.draft);
      add('Pillow without draft (full decode) -> 28x28 gray', p.nodraft);
      add('Pillow full decode only', p.full);
      add('Preprocessor.toTensor (camera path: libjpeg-turbo DCT-scaled + area average)', await cpuPerCall(files, passes, (b) => pre.toTensor(b)));
      add('Preprocessor.toTensor through sharp (whole-frame ROI: the general path)', await cpuPerCall(files, passes, (b) => viaSharp.toTensor(b)));
      add('bare sharp: greyscale + resize 28x28 + raw', await cpuPerCall(files, passes, (b) => sharp(b).greyscale().resize(28, 28, { fit: 'fill' }).raw().toBuffer()));
      add('sharp full decode only', await cpuPerCall(files, passes, (b) => sharp(b).raw().toBuffer()));
      add('sharp set-up alone: 28x28 raw in, raw out', await cpuPerCall(files, passes, () => sharp(zero, tiny).raw().toBuffer()));
    }
    const floorName = 'floor: libjpeg-turbo DCT-scaled (Pillow draft) -> 28x28 gray';
    printComparison(
      `JPEG 640x480 (${(files.reduce((n, b) => n + b.length, 0) / files.length / 1024).toFixed(0)} KiB avg, ${files.length} files) -> 28x28 gray: CPU per frame, best of 3 rounds (sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}, its JPEG codec: ${sharp.versions.mozjpeg ? 'mozjpeg' : 'libjpeg-turbo'})`,
      Object.entries(rows).map(([name, v]) => ({ name, value: Math.min(...v), unit: 'µs' })),
      floorName,
    );

    // 3. Capacity: the cores divided by what one 25 fps camera costs (stream decode + engine), measured here.
    const engine = await Engine.load(MODEL, { threads: { intraOp: 1, interOp: 1 } });
    const tensors = await Promise.all(files.slice(0, 16).map((b) => pre.toTensor(b)));
    const engineUs = await cpuPerCall([Buffer.alloc(0)], quick ? 20 : 100, () => engine.inferBatch(tensors)) / tensors.length;
    await engine.dispose();
    await keptPng(engineUs, passes);
    const perCamera = 25 * (o.cpuUsPerFrame + engineUs);
    const cores = cpus().length;
    printComparison(
      `capacity: 25 fps 1280x720 H.264 cameras per node on ${cores} cores (CPU per camera-second = 25 x (stream ${o.cpuUsPerFrame.toFixed(0)} µs + engine ${engineUs.toFixed(0)} µs))`,
      [
        { name: 'cameras at 100% of the cores', value: (cores * 1e6) / perCamera, unit: 'cameras' },
        { name: 'cameras at 70% of the cores (headroom)', value: (0.7 * cores * 1e6) / perCamera, unit: 'cameras' },
      ],
      'cameras at 100% of the cores',
      true,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A camera frame's PNG (src/ingest/raw-png.ts: made once, off the decision path, only for a frame kept or held) at
 * the sizes models take, against the engine's time per frame measured above. A new frame object per call, since a
 * frame's PNG is made once.
 */
async function keptPng(engineUs: number, passes: number): Promise<void> {
  const sizes: Array<[number, 1 | 3]> = [[28, 1], [64, 1], [224, 3]];
  const rows: Row[] = [{ name: 'engine decision per frame (fashion-sgmoe, batch of 16)', value: engineUs, unit: 'µs' }];
  for (const [side, channels] of sizes) {
    const data = Buffer.from(Array.from({ length: side * side * channels }, (_, i) => (i * 37 + (i >> 5) * 11) & 255));
    const raw = () => ({ data, width: side, height: side, channels, format: channels === 1 ? ('gray' as const) : ('rgb' as const), prepared: true });
    const us = await cpuPerCall([data], passes * 10, () => pngOf({ id: 'f', source: 'bench', receivedAt: 0, raw: raw() }));
    rows.push({ name: `PNG of a ${side}x${side} ${channels === 1 ? 'gray' : 'RGB'} camera frame, kept or held`, value: us, unit: 'µs' });
  }
  printComparison('a camera frame kept as PNG (anomalous frames by default): CPU per kept frame, beside a decision', rows, rows[0].name);
}

async function main(): Promise<void> {
  printHeader('ingest: camera streams, JPEG decode and preprocessing per frame, each beside its floor', {
    sharp: sharp.versions.sharp ?? 'n/a',
    libvips: sharp.versions.vips,
    ffmpeg: execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' }).split('\n')[0].split(' ')[2],
    mode: quick ? 'quick' : 'full',
  });
  sharp.concurrency(1);
  sharp.cache(false);
  await streamAndJpeg(SPEC);
  if (streamOnly) return;

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
