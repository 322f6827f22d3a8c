import type { InputSpec } from '../../src/model/manifest';
import sharp from 'sharp';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { finalSummary } from '../../src/node/summary';
import { VideoSource, type Frame } from '../../src/ingest';
import type { SgmoeError } from '../../src/errors';
import { BUNDLED, readManifest } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { samplesClip } from '../helpers/video';
import { SAMPLE_NAMES, hotFolder, sampleNode } from '../node/sample-node';

const tmp = tempDir();
const manifest = readManifest(BUNDLED);
const input = manifest.input as InputSpec;
let clip: string;

beforeAll(() => {
  clip = samplesClip(join(tmp.path, 'samples.mp4'));
});
afterAll(() => tmp.cleanup());

/** A 64x64 test pattern at 25 fps in MPEG-TS (which starts at 1.48 s), with a keyframe every `gop` frames. */
function tsClip(name: string, frames: number, gop: number): string {
  const path = join(tmp.path, name);
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=25',
    '-frames:v', String(frames), '-c:v', 'libx264', '-g', String(gop), '-pix_fmt', 'yuv420p', '-f', 'mpegts', path,
  ]);
  return path;
}

/** TS timestamps: 90 kHz, 3600 a frame at 25 fps, from 1.48 s. */
const tsPts = (count: number) => Array.from({ length: count }, (_, i) => 133200 + i * 3600);

/**
 * Large frames (100 kB each) keep the decoder only a queue and a pipe ahead of the consumer, so it is still
 * decoding when a test kills it.
 */
const large = { ...input, width: 320, height: 320 };

/** Every frame a source yields, settled as decided; `onFrame` runs before each is settled. */
async function drain(source: VideoSource, onFrame: (frame: Frame, index: number) => void = () => {}): Promise<Frame[]> {
  const frames: Frame[] = [];
  for await (const frame of source) {
    onFrame(frame, frames.length);
    frames.push(frame);
    await source.settle(frame, { status: 'decided' });
  }
  return frames;
}

describe('video:PATH (recorded files through ffmpeg)', () => {
  test('with --once, every frame of a clip made from the samples is decided exactly once, in order, with the label of its sample file', async () => {
    const sample = await sampleNode({ device: 'x86_64-cpu', sources: [{ uri: `video:${clip}`, name: 'shift' }] });
    await sample.node.run();
    await sample.node.stop();

    expect(sample.rejected).toEqual([]);
    expect(sample.decisions).toHaveLength(SAMPLE_NAMES.length);
    // The file's own timestamps are the ids: 25 fps in the 1/12800 time base of the MP4 track.
    expect(sample.decisions.map((d) => d.frameId)).toEqual(SAMPLE_NAMES.map((_, i) => `shift@${i * 512}`));
    const labels = sample.decisions.map((d) => d.labelIndex);
    // Each frame gets the label the model gives its sample file (a hot folder of them): nothing was lost in the clip.
    const onFiles = await sampleNode({ device: 'x86_64-cpu', sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), SAMPLE_NAMES.length)}` }] });
    await onFiles.node.run();
    await onFiles.node.stop();
    const fileLabel = (name: string) => onFiles.decisions.find((d) => d.frameId.includes(`/${name}@`))!.labelIndex;
    expect(labels).toEqual(SAMPLE_NAMES.map(fileLabel));
    expect(sample.node.snapshot().totals).toMatchObject({ ingested: SAMPLE_NAMES.length, decided: SAMPLE_NAMES.length, dropped: 0, pending: 0 });
  });

  test('a decoder killed mid-file is restarted where it stopped: no frame is skipped or yielded twice', async () => {
    // At its own rate the decoder is still reading the file (2.4 s of video) when frame 10 comes out.
    const source = new VideoSource(clip, { once: true, rate: 'native', policy: 'block', input, backoff: { initialMs: 1 } });
    const frames = await drain(source, (_frame, index) => {
      if (index === 10) process.kill(source.decoderPid!, 'SIGKILL');
    });
    expect(frames.map((f) => f.meta?.pts)).toEqual(SAMPLE_NAMES.map((_, i) => i * 512));
    expect(source.stats()).toMatchObject({ frames: 60, decided: 60, restarts: 1, errors: 1, lastError: { code: 'E_SOURCE_DECODER' } });
  });

  test('an MPEG-TS decoder killed mid-file resumes from its own timestamps (not offset by the start time): no frame is skipped or yielded twice', async () => {
    const file = tsClip('gop25.ts', 300, 25);
    const source = new VideoSource(file, { once: true, policy: 'block', input: large, backoff: { initialMs: 1 } });
    const frames = await drain(source, (_frame, index) => {
      if (index === 200) process.kill(source.decoderPid!, 'SIGKILL');
    });
    expect(frames.map((f) => f.meta?.pts)).toEqual(tsPts(300));
    expect(source.stats()).toMatchObject({ frames: 300, decided: 300, restarts: 1, errors: 1 });
  });

  test('a resumed decoder whose seek lands past the last frame (the next keyframe is after it) decodes the file again from its start', async () => {
    // Keyframes at 0 and 10 s: a seek to near 8 s lands on the one at 10 s.
    const file = tsClip('gop250.ts', 300, 250);
    const errors: SgmoeError[] = [];
    const source = new VideoSource(file, { once: true, policy: 'block', input: large, backoff: { initialMs: 1 }, onError: (e) => errors.push(e) });
    const frames = await drain(source, (_frame, index) => {
      if (index === 200) process.kill(source.decoderPid!, 'SIGKILL');
    });
    expect(frames.map((f) => f.meta?.pts)).toEqual(tsPts(300));
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('killed by SIGKILL'), expect.stringContaining('decoding again from the start')]);
    expect(source.stats()).toMatchObject({ frames: 300, decided: 300, restarts: 2 });
  });

  test('recordings joined end to end (timestamps going back) give every frame once, with an id that names its segment', async () => {
    const part = readFileSync(tsClip('part.ts', 50, 25));
    const joined = join(tmp.path, 'joined.ts');
    writeFileSync(joined, Buffer.concat([part, part]));
    const frames = await drain(new VideoSource(joined, { once: true, input: large }));
    const ids = tsPts(50).map((pts) => `video:${joined}@${pts}`);
    expect(frames.map((f) => f.id)).toEqual([...ids, ...tsPts(50).map((pts) => `video:${joined}@1:${pts}`)]);

    // Killed in the second part, the decoder is started again from the start (a seek by timestamp is ambiguous there).
    const source = new VideoSource(joined, { once: true, policy: 'block', input: large, backoff: { initialMs: 1 } });
    const resumed = await drain(source, (_frame, index) => {
      if (index === 60) process.kill(source.decoderPid!, 'SIGKILL');
    });
    expect(resumed.map((f) => f.id)).toEqual(frames.map((f) => f.id));
    expect(source.stats()).toMatchObject({ frames: 100, decided: 100, restarts: 1 });
  });

  test('a node counts its camera decoder\'s restarts, in the snapshot and the summary', async () => {
    const sample = await sampleNode({ device: 'x86_64-cpu', sources: [{ uri: `video:${clip}`, name: 'replay', rate: 'native' }] });
    let killed = false;
    sample.node.on('decision', () => {
      if (killed || sample.decisions.length < 10) return;
      killed = true;
      process.kill(decoderOf(clip), 'SIGKILL'); // the real ffmpeg reading this clip, found in /proc
    });
    await sample.node.run();
    await sample.node.stop();
    const snap = sample.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: SAMPLE_NAMES.length, decided: SAMPLE_NAMES.length, pending: 0 });
    expect(snap.sources[0].counters).toMatchObject({ restarts: 1 });
    expect(finalSummary(snap)).toMatch(/replay .*decoder restarts 1/);
  });

  test('frames come out at the model size, already through the ROI, and need no other preprocessing', async () => {
    const source = new VideoSource(clip, { once: true, input, preprocess: { roi: { x: 0, y: 0, width: 112, height: 112 } } });
    const [first] = await drain(source);
    expect(first.raw).toMatchObject({ width: 28, height: 28, channels: 1, format: 'gray', prepared: true });
    // The top-left quarter of the first sample, each pixel twice as wide and high: the ROI was cut by the decoder.
    const sample = await sharp(join(BUNDLED, 'samples', SAMPLE_NAMES[0])).greyscale().raw().toBuffer();
    const raw = first.raw!.data;
    let worst = 0;
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) worst = Math.max(worst, Math.abs(raw[y * 28 + x] - sample[(y >> 1) * 28 + (x >> 1)]));
    expect(worst).toBeLessThan(16);
  });

  test('played at its own rate, a file behaves like a live camera: a consumer that falls behind loses the oldest frames, each drop counted', async () => {
    let dropped!: () => void;
    const firstDrop = new Promise<void>((resolve) => (dropped = resolve));
    const source = new VideoSource(clip, { input, onDrop: () => dropped() });
    const frames = source[Symbol.asyncIterator]();
    const first = await frames.next();
    // The consumer stalls on its first frame while the decoder goes on at 25 fps into a queue of 2.
    await firstDrop;
    await source.settle(first.value!, { status: 'decided' });
    await source.stop();
    let rest = 0;
    for (let next = await frames.next(); !next.done; next = await frames.next()) {
      await source.settle(next.value, { status: 'decided' });
      rest++;
    }
    const stats = source.stats();
    expect(stats.dropped).toBeGreaterThanOrEqual(1);
    expect(stats.frames).toBe(stats.decided + stats.dropped);
    expect(stats.decided).toBe(1 + rest);
  });

  test('a missing file ends the source with E_SOURCE_NOT_FOUND naming it', async () => {
    const errors: SgmoeError[] = [];
    const source = new VideoSource(join(tmp.path, 'nope.mp4'), { once: true, input, onError: (e) => errors.push(e) });
    await expect(drain(source)).rejects.toMatchObject({ code: 'E_SOURCE_NOT_FOUND', message: expect.stringContaining('nope.mp4') });
    expect(errors.map((e) => e.code)).toEqual(['E_SOURCE_NOT_FOUND']);
  });

  test("the decoder crops to the package's input.roi unless the source names its own roi", () => {
    const roi = { x: 2, y: 2, width: 20, height: 20 };
    expect(new VideoSource(clip, { once: true, input: { ...input, roi } }).output.roi).toEqual(roi);
    const own = { x: 0, y: 0, width: 28, height: 28 };
    expect(new VideoSource(clip, { once: true, input: { ...input, roi }, preprocess: { roi: own } }).output.roi).toEqual(own);
    expect(new VideoSource(clip, { once: true, input }).output.roi).toBeUndefined();
  });

  test('an ROI outside the picture ends the source with E_FRAME_ROI naming both sizes, as a dir: source rejects its frames', async () => {
    const source = new VideoSource(clip, { once: true, input, preprocess: { roi: { x: 0, y: 0, width: 640, height: 480 } } });
    await expect(drain(source)).rejects.toMatchObject({
      code: 'E_FRAME_ROI',
      message: `source video:${clip}: expected the ROI 640x480+0+0 inside the frame, found a 224x224 frame`,
    });
  });

  test('a video smaller than the package\'s minimum source size is refused frame by frame with E_FRAME_TOO_SMALL, not upscaled and decided', async () => {
    const tiny = join(tmp.path, 'tiny.mkv');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=4x4:rate=25', '-frames:v', '10', '-c:v', 'ffv1', tiny]);
    const sample = await sampleNode({ device: 'x86_64-cpu', sources: [{ uri: `video:${tiny}` }] });
    await sample.node.run();
    await sample.node.stop();
    expect(sample.decisions).toEqual([]);
    expect(sample.rejected.map((r) => r.code)).toEqual(Array(10).fill('E_FRAME_TOO_SMALL'));
    expect(sample.node.snapshot().totals).toMatchObject({ ingested: 10, decided: 0, rejected: 10, dropped: 0, pending: 0 });
  });

  test('a file that is not a video ends the source with E_SOURCE_INVALID_DATA', async () => {
    const source = new VideoSource(join(BUNDLED, 'manifest.json'), { once: true, input });
    await expect(drain(source)).rejects.toMatchObject({ code: 'E_SOURCE_INVALID_DATA' });
  });
});

/** The pid of the ffmpeg process whose command line names `file`. */
function decoderOf(file: string): number {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('ffmpeg') && argv.includes(file)) return Number(pid);
    } catch {
      // gone since the listing
    }
  }
  throw new Error(`no ffmpeg process reads ${file}`);
}
