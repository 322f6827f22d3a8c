import { mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { WaveFile } from 'wavefile';
import type { SgmoeError } from '../../../src/errors';
import { DirSource, PushSource, type Frame } from '../../../src/ingest';
import { SignalPreprocessor } from '../../../src/ingest/kinds/signal/preprocess';
import type { SignalSpec } from '../../../src/ingest/kinds/signal/spec';
import { SignalWindowSource } from '../../../src/ingest/kinds/signal/window-source';
import { tempDir } from '../../helpers/tmp';

const spec: SignalSpec = { kind: 'signal', name: 'signal', channels: 2, sampleRate: 1000, window: 8, hop: 4, units: 'g', layout: 'NCW' };
const FAST = { pollMs: 20, stableMs: 60 };

function wav(channels: number[][], rate = 1000, bitDepth = '32f'): Buffer {
  const w = new WaveFile();
  w.fromScratch(channels.length, rate, bitDepth, channels);
  return Buffer.from(w.toBuffer());
}

const ramp = (n: number, from = 0) => Array.from({ length: n }, (_, i) => (from + i) / 100);

/** The node's loop in miniature: preprocess each window frame, settle it decided or rejected. */
async function drain(source: SignalWindowSource, until?: (seen: Frame[]) => boolean): Promise<{ seen: Frame[]; rejected: Record<string, string> }> {
  const pre = new SignalPreprocessor(spec);
  const seen: Frame[] = [];
  const rejected: Record<string, string> = {};
  for await (const frame of source) {
    seen.push(frame);
    try {
      await pre.toTensor(frame);
      await source.settle(frame, { status: 'decided' });
    } catch (err) {
      rejected[String(frame.meta?.file ?? frame.id)] = (err as SgmoeError).code;
      await source.settle(frame, { status: 'rejected', error: err as SgmoeError });
    }
    if (until?.(seen)) break;
  }
  return { seen, rejected };
}

describe('SignalWindowSource', () => {
  const tmp = tempDir('sgmoe-signal-');
  afterAll(() => tmp.cleanup());

  test('a hot folder of WAV/CSV recordings: every window is a frame, each bad file is one rejected frame with its code, files move once all their windows are settled', async () => {
    const inbox = join(tmp.path, 'inbox');
    mkdirSync(inbox);
    const files: Record<string, Buffer> = {
      'a-good.wav': wav([ramp(20), ramp(20, 50)]), // 20 samples: windows at 0, 4, 8, 12
      'b-good.csv': Buffer.from('time,x,y\n' + ramp(12).map((v, i) => `${i / 1000},${v},${-v}`).join('\n') + '\n'), // windows at 0, 4
      'c-rate.wav': wav([ramp(20), ramp(20)], 2000),
      'd-channels.wav': wav([ramp(20), ramp(20), ramp(20)]),
      // NaN at sample 5: only the windows over it (at 0 and 4) are rejected; those at 8 and 12 are decided.
      'e-nan.csv': Buffer.from('time,x,y\n' + ramp(20).map((v, i) => `${i / 1000},${i === 5 ? 'NaN' : v},${v}`).join('\n') + '\n'),
      'f-truncated.wav': wav([ramp(20), ramp(20)]).subarray(0, 100),
      'g-empty.wav': Buffer.alloc(0),
      'h-short.wav': wav([ramp(5), ramp(5)]),
    };
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(inbox, name), bytes);

    const source = new SignalWindowSource(new DirSource(inbox, { ...FAST, once: true }), spec);
    const { seen, rejected } = await drain(source);

    expect(rejected).toEqual({
      'c-rate.wav': 'E_SIGNAL_RATE',
      'd-channels.wav': 'E_SIGNAL_CHANNELS',
      'e-nan.csv': 'E_SIGNAL_NAN',
      'f-truncated.wav': 'E_SIGNAL_TRUNCATED',
      'g-empty.wav': 'E_SIGNAL_EMPTY',
      'h-short.wav': 'E_SIGNAL_SHORT',
    });
    const windows = seen.filter((f) => f.samples);
    expect(windows.map((f) => [f.meta?.file, (f.meta?.signal as { offset: number }).offset])).toEqual([
      ['a-good.wav', 0], ['a-good.wav', 4], ['a-good.wav', 8], ['a-good.wav', 12],
      ['b-good.csv', 0], ['b-good.csv', 4],
      ['e-nan.csv', 0], ['e-nan.csv', 4], ['e-nan.csv', 8], ['e-nan.csv', 12],
    ]);
    expect(source.stats().rejected).toBe(Object.keys(rejected).length + 1); // e-nan.csv's two windows
    expect(Array.from(windows[1].samples!.subarray(0, 2))).toEqual([ramp(6)[4], ramp(6)[5]].map(Math.fround));
    expect(new Set(seen.map((f) => f.id)).size).toBe(seen.length);
    const stats = source.stats();
    expect(stats.frames).toBe(windows.length + Object.keys(rejected).length - 1); // e-nan.csv's rejected windows are windows
    expect(stats.frames).toBe(stats.decided + stats.rejected + stats.dropped + stats.queued);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['a-good.wav', 'b-good.csv']);
    expect(readFileSync(join(inbox, 'rejected', 'c-rate.wav.reason.txt'), 'utf8')).toMatch(/^E_SIGNAL_RATE: expected .* 1000 Hz, found 2000 Hz/);
    expect(readFileSync(join(inbox, 'rejected', 'e-nan.csv.reason.txt'), 'utf8')).toMatch(/^E_SIGNAL_NAN: expected finite samples in .*, found NaN at sample 5 of channel 0/);
  });

  test("a recording the hot folder cannot read counts in the window source's errors, which are what the node shows", async () => {
    const inbox = join(tmp.path, 'unreadable');
    mkdirSync(inbox);
    writeFileSync(join(inbox, 'a-good.wav'), wav([ramp(20), ramp(20, 50)]));
    writeFileSync(join(inbox, 'b-huge.wav'), '');
    truncateSync(join(inbox, 'b-huge.wav'), 2 ** 31 + 64); // sparse: Node reads no file over 2 GiB at once
    const source = new SignalWindowSource(new DirSource(inbox, { ...FAST, once: true }), spec);
    await drain(source);
    const stats = source.stats();
    expect(stats.errors).toBeGreaterThanOrEqual(1);
    expect(stats.lastError).toMatchObject({ code: 'E_SOURCE_IO', message: expect.stringContaining('b-huge.wav') });
  });

  test('a stream of blocks is windowed across blocks; a timestamp gap restarts it and is counted; a bad block is one rejected frame and the stream goes on', async () => {
    const push = new PushSource('push:machine-1');
    const source = new SignalWindowSource(push, spec);
    const block = (ts: number, n: number, from: number) => Buffer.from(JSON.stringify({ ts, sampleRate: 1000, channels: 2, samples: ramp(n, from).map((v) => [v, -v]) }));
    const sent = [block(0, 6, 0), block(6, 6, 6), Buffer.from('{"ts": 12, "sampleRate": 1000}'), block(100, 8, 100), block(108, 4, 108)];
    const done = drain(source);
    for (const payload of sent) await push.push(payload);
    push.end();
    const { seen, rejected } = await done;
    // 12 contiguous samples: windows at 0 and 4 ms; the bad block; after the gap, windows at 100 and 104 ms.
    expect(seen.map((f) => (f.samples ? (f.meta?.signal as { start: number }).start : 'bad'))).toEqual([0, 4, 'bad', 100, 104]);
    expect(Array.from(seen[4].samples!.subarray(0, 2))).toEqual([1.04, 1.05].map(Math.fround));
    expect(Object.values(rejected)).toEqual(['E_SIGNAL_FORMAT']);
    const stats = source.stats();
    expect([stats.frames, stats.decided, stats.rejected]).toEqual([5, 4, 1]);
    expect(source.stats().windowResets).toBe(1);
  });

  test('blocks without a timestamp (a sensor without a clock) follow on; blocks whose clock never moves restart the stream, said at the 1st and 10th reset', async () => {
    const lines: Array<{ msg: string; resets: number; samplesDropped: number }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const clockless = new PushSource('push:no-clock');
    const stream = new SignalWindowSource(clockless, spec, { logger });
    const block = (n: number, from: number, ts?: number) => Buffer.from(JSON.stringify({ ...(ts === undefined ? {} : { ts }), sampleRate: 1000, channels: 2, samples: ramp(n, from).map((v) => [v, -v]) }));
    const done = drain(stream);
    for (let i = 0; i < 3; i++) await clockless.push(block(4, 4 * i));
    clockless.end();
    // 12 samples in 3 blocks: windows at 0 and 4, across the blocks.
    expect((await done).seen.map((f) => (f.meta?.signal as { offset: number }).offset)).toEqual([0, 4]);
    expect(stream.stats().windowResets).toBe(0);

    const stuck = new PushSource('push:stuck-clock');
    const stuckStream = new SignalWindowSource(stuck, spec, { logger });
    const stuckDone = drain(stuckStream);
    for (let i = 0; i < 11; i++) await stuck.push(block(6, 0, 0));
    stuck.end();
    expect((await stuckDone).seen).toEqual([]);
    expect(stuckStream.stats().windowResets).toBe(10);
    expect(lines.map((l) => [l.resets, l.samplesDropped])).toEqual([[1, 6], [10, 6]]);
    expect(lines[0].msg).toContain('does not follow on from the previous one: 6 samples held were dropped');
  });

  test("a source's gain brings its samples to the package's units before windowing", async () => {
    const push = new PushSource('push:in-mg');
    const source = new SignalWindowSource(push, spec, { gain: 0.001 });
    const done = drain(source);
    await push.push(Buffer.from(JSON.stringify({ sampleRate: 1000, channels: 2, samples: ramp(8).map((v) => [v * 1000, -v * 1000]) })));
    push.end();
    const [window] = (await done).seen;
    expect(Array.from(window.samples!.subarray(0, 3))).toEqual(ramp(3).map(Math.fround));
  });
});
