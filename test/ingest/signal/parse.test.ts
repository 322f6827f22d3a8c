import { WaveFile } from 'wavefile';
import { checkBlock } from '../../../src/ingest/kinds/signal/block';
import { parseCsv } from '../../../src/ingest/kinds/signal/csv';
import type { SignalSpec } from '../../../src/ingest/kinds/signal/spec';
import { BINARY_HEADER_BYTES, parseStreamBlock } from '../../../src/ingest/kinds/signal/stream-block';
import { parseWav } from '../../../src/ingest/kinds/signal/wav';
import { Windower } from '../../../src/ingest/kinds/signal/windower';

const spec: SignalSpec = { kind: 'signal', name: 'signal', channels: 2, sampleRate: 1000, window: 8, hop: 4, units: 'g', layout: 'NCW' };

function wav(bitDepth: string, channels: number[][], rate = 1000): Buffer {
  const w = new WaveFile();
  w.fromScratch(channels.length, rate, bitDepth, channels);
  return Buffer.from(w.toBuffer());
}

/** A WAVE_FORMAT_EXTENSIBLE file (as scipy writes for more than two channels) of interleaved samples of `code`. */
function extensible(code: number, bits: number, rows: number[][], rate = 1000): Buffer {
  const channels = rows[0].length;
  const data = Buffer.alloc(rows.length * channels * (bits / 8));
  rows.flat().forEach((v, i) => (code === 3 ? data.writeFloatLE(v, 4 * i) : data.writeIntLE(v, (bits / 8) * i, bits / 8)));
  const fmt = Buffer.alloc(40);
  fmt.writeUInt16LE(0xfffe, 0);
  fmt.writeUInt16LE(channels, 2);
  fmt.writeUInt32LE(rate, 4);
  fmt.writeUInt32LE(rate * channels * (bits / 8), 8);
  fmt.writeUInt16LE(channels * (bits / 8), 12);
  fmt.writeUInt16LE(bits, 14);
  fmt.writeUInt16LE(22, 16); // cbSize
  fmt.writeUInt16LE(bits, 18); // valid bits
  fmt.writeUInt32LE(0, 20); // channel mask
  Buffer.from(`${code.toString(16).padStart(8, '0').match(/../g)!.reverse().join('')}000010008000 00aa00389b71`.replace(' ', ''), 'hex').copy(fmt, 24);
  const chunk = (id: string, body: Buffer) => Buffer.concat([Buffer.from(id, 'latin1'), Buffer.from(Uint32Array.of(body.length).buffer), body]);
  const body = Buffer.concat([Buffer.from('WAVE', 'latin1'), chunk('fmt ', fmt), chunk('data', data)]);
  return chunk('RIFF', body);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

/** A binary block: header then float32 samples interleaved by instant. */
function binary(ts: number, rate: number, rows: number[][], tags: { rpm?: number; load?: number } = {}): Buffer {
  const channels = rows[0]?.length ?? 0;
  const out = Buffer.alloc(BINARY_HEADER_BYTES + rows.length * channels * 4);
  out.write('SGSB', 0, 'latin1');
  out.writeUInt8(1, 4);
  out.writeUInt8(channels, 5);
  out.writeUInt16LE((tags.rpm !== undefined ? 1 : 0) | (tags.load !== undefined ? 2 : 0), 6);
  out.writeDoubleLE(ts, 8);
  out.writeDoubleLE(rate, 16);
  out.writeFloatLE(tags.rpm ?? 0, 24);
  out.writeFloatLE(tags.load ?? 0, 28);
  rows.flat().forEach((v, i) => out.writeFloatLE(v, BINARY_HEADER_BYTES + 4 * i));
  return out;
}

describe('signal payloads', () => {
  it('reads PCM 16-bit, PCM 24-bit and float32 WAV files to the same scaled samples as the factory (value / 2^(bits-1))', () => {
    const pcm16 = parseWav(wav('16', [[0, 16384, -32768], [1, 2, 3]]), 'a.wav');
    expect(Array.from(pcm16.samples[0])).toEqual([0, 0.5, -1]);
    expect(pcm16.samples[1][2]).toBeCloseTo(3 / 32768, 9);
    const pcm24 = parseWav(wav('24', [[0, 4194304, -8388608], [0, 0, 0]]), 'b.wav');
    expect(Array.from(pcm24.samples[0])).toEqual([0, 0.5, -1]);
    const float = parseWav(wav('32f', [[0.25, -0.125], [2.5, -3]]), 'c.wav');
    expect(float).toMatchObject({ sampleRate: 1000, channels: 2 });
    expect(Array.from(float.samples[1])).toEqual([2.5, -3]);
  });

  it('reads WAVE_FORMAT_EXTENSIBLE files by their sub-format: float32 as floats (not as 32-bit integers), PCM as PCM', () => {
    const float = parseWav(extensible(3, 32, [[-0.01275, 0.5, 2.5], [0.25, -0.125, -3]]), 'f.wav');
    expect(float).toMatchObject({ sampleRate: 1000, channels: 3 });
    expect(Array.from(float.samples[0])).toEqual([Math.fround(-0.01275), 0.25]);
    expect(Array.from(float.samples[2])).toEqual([2.5, -3]);
    const pcm = parseWav(extensible(1, 16, [[16384, -32768], [0, 8192]]), 'p.wav');
    expect(Array.from(pcm.samples[0])).toEqual([0.5, 0]);
    expect(Array.from(pcm.samples[1])).toEqual([-1, 0.25]);
    // Another sub-format (A-law) is named, not read as PCM.
    expect(() => parseWav(extensible(6, 16, [[1, 2]]), 'a.wav')).toThrow(expect.objectContaining({ code: 'E_SIGNAL_FORMAT', message: expect.stringContaining('format 6') }));
  });

  it('rejects an empty WAV, a truncated WAV and a file that is no WAV, each with its own code', () => {
    const whole = wav('32f', [[1, 2, 3, 4], [5, 6, 7, 8]]);
    expect(codeOf(() => parseWav(Buffer.alloc(0), 'e.wav'))).toBe('E_SIGNAL_EMPTY');
    expect(codeOf(() => parseWav(whole.subarray(0, whole.length - 6), 't.wav'))).toBe('E_SIGNAL_TRUNCATED');
    expect(codeOf(() => parseWav(Buffer.from('time,x\n0,1\n'), 'n.wav'))).toBe('E_SIGNAL_FORMAT');
    // Being written by a recorder that fills in the sizes when it closes the file: 0 in the header, samples after it.
    const open = Buffer.from(whole);
    open.writeUInt32LE(4, 4); // RIFF size: the format alone
    open.writeUInt32LE(0, open.indexOf('data', 12, 'latin1') + 4);
    expect(() => parseWav(open, 'o.wav')).toThrow(
      expect.objectContaining({ code: 'E_SIGNAL_TRUNCATED', message: expect.stringContaining('a header giving 0 bytes of samples, and 64 bytes more than it covers') }),
    );
    // A finished WAV without samples is empty, whatever chunks follow (a comment that says "metadata").
    const tagged = new WaveFile();
    tagged.fromScratch(2, 1000, '32f', [[], []]);
    tagged.setTag('ICMT', 'metadata');
    expect(codeOf(() => checkBlock(parseWav(Buffer.from(tagged.toBuffer()), 'm.wav'), spec, 'm.wav'))).toBe('E_SIGNAL_EMPTY');
  });

  it('reads a CSV recording with its sample rate from the time column, and rejects a short row as truncated', () => {
    const block = parseCsv(Buffer.from('time,x,y\n0,1,2\n0.001,3,4\n0.002,5,6\n'), 'r.csv');
    expect(block).toMatchObject({ sampleRate: 1000, channels: 2 });
    expect(Array.from(block.samples[1])).toEqual([2, 4, 6]);
    expect(codeOf(() => parseCsv(Buffer.from('time,x,y\n0,1,2\n0.001,3\n'), 'r.csv'))).toBe('E_SIGNAL_TRUNCATED');
    expect(codeOf(() => parseCsv(Buffer.from('x,y\n1,2\n'), 'r.csv'))).toBe('E_SIGNAL_FORMAT');
    expect(codeOf(() => parseCsv(Buffer.alloc(0), 'r.csv'))).toBe('E_SIGNAL_EMPTY');
  });

  it('takes the rate of a time column written to the microsecond as the true one, and refuses a time column that is no increasing seconds', () => {
    // 25.6 kHz to 6 decimals: steps of 39 or 40 us, each alone 25641 or 25000 Hz.
    const rows = Array.from({ length: 2000 }, (_, i) => `${(i / 25600).toFixed(6)},${i % 7}`);
    expect(parseCsv(Buffer.from(['time,x', ...rows].join('\n')), 'us.csv').sampleRate).toBe(25600);
    for (const times of [['2026-12-06T09:40:00.000Z', '2026-12-06T09:40:00.001Z'], ['0', '0', '0'], ['0.002', '0.001'], ['0', '']]) {
      const csv = ['time,x', ...times.map((t) => `${t},1`)].join('\n');
      expect(() => parseCsv(Buffer.from(csv), 't.csv')).toThrow(expect.objectContaining({ code: 'E_SIGNAL_FORMAT', message: expect.stringContaining('increasing times') }));
    }
    // A gap (a second missing at 1 kHz) is named where it is, not read as another rate.
    const gap = ['time,x', ...Array.from({ length: 3000 }, (_, i) => `${(i < 1000 ? i : i + 1000) / 1000},1`)].join('\n');
    expect(() => parseCsv(Buffer.from(gap), 'g.csv')).toThrow(expect.objectContaining({ code: 'E_SIGNAL_FORMAT', message: expect.stringContaining('found a step of 1.001 s on line 1002') }));
    // A rate that is no number is never within tolerance.
    const block = { sampleRate: NaN, channels: 2, samples: [Float32Array.of(1), Float32Array.of(2)], tags: {} };
    expect(codeOf(() => checkBlock(block, spec, 'n'))).toBe('E_SIGNAL_RATE');
  });

  it('reads JSON and binary MQTT sample blocks with their timestamp and rpm/load tags', () => {
    const json = parseStreamBlock(Buffer.from(JSON.stringify({ ts: 1000, sampleRate: 1000, channels: 2, samples: [[1, 2], [3, 4]], rpm: 1800 })), 't');
    expect(json).toMatchObject({ timestamp: 1000, sampleRate: 1000, channels: 2, tags: { rpm: 1800 } });
    expect(Array.from(json.samples[0])).toEqual([1, 3]);
    const bin = parseStreamBlock(binary(2000, 1000, [[1, 2], [3, 4], [5, 6]], { load: 0.5 }), 't');
    expect(bin).toMatchObject({ timestamp: 2000, channels: 2, tags: { load: 0.5 } });
    expect(Array.from(bin.samples[1])).toEqual([2, 4, 6]);
    expect(codeOf(() => parseStreamBlock(binary(0, 1000, [[1, 2]]).subarray(0, BINARY_HEADER_BYTES + 6), 't'))).toBe('E_SIGNAL_TRUNCATED');
    expect(codeOf(() => parseStreamBlock(Buffer.from('{"ts": 1}'), 't'))).toBe('E_SIGNAL_FORMAT');
    expect(codeOf(() => parseStreamBlock(Buffer.from(JSON.stringify({ ts: 1, sampleRate: 1000, channels: 2, samples: [[1, 2], [3]] })), 't'))).toBe('E_SIGNAL_CHANNELS');
  });

  it('checks a block against the package: wrong sample rate, wrong channel count and no samples have their own codes (NaN is refused per window)', () => {
    const block = (rate: number, samples: number[][]) => ({ sampleRate: rate, channels: samples.length, samples: samples.map((s) => Float32Array.from(s)), tags: {} });
    expect(checkBlock(block(1000, [[1], [2]]), spec, 'x')).toBeTruthy();
    expect(codeOf(() => checkBlock(block(2000, [[1], [2]]), spec, 'x'))).toBe('E_SIGNAL_RATE');
    expect(codeOf(() => checkBlock(block(1000, [[1], [2], [3]]), spec, 'x'))).toBe('E_SIGNAL_CHANNELS');
    expect(checkBlock(block(1000, [[1, NaN], [2, 3]]), spec, 'x')).toBeTruthy();
    expect(codeOf(() => checkBlock(block(1000, [[], []]), spec, 'x'))).toBe('E_SIGNAL_EMPTY');
    expect(codeOf(() => parseStreamBlock(Buffer.from(JSON.stringify({ ts: 1, sampleRate: 1000, channels: 1, samples: [[null]] })), 't'))).toBeUndefined();
  });
});

describe('Windower', () => {
  const ramp = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const block = (ts: number | undefined, from: number, n: number) => ({
    sampleRate: 1000,
    channels: 2,
    samples: [Float32Array.from(ramp(from, n)), Float32Array.from(ramp(1000 + from, n))],
    ...(ts === undefined ? {} : { timestamp: ts }),
    tags: {},
  });

  it('cuts windows every hop across block boundaries, channel-major, with the time of their first sample', () => {
    const w = new Windower(spec);
    expect(w.push(block(0, 0, 5))).toEqual([]);
    const first = w.push(block(5, 5, 7)); // 12 samples: windows at 0 and 4
    expect(first.map((x) => x.offset)).toEqual([0, 4]);
    expect(Array.from(first[1].data)).toEqual([...ramp(4, 8), ...ramp(1004, 8)]);
    expect(first[1].start).toBe(4);
    const next = w.push(block(12, 12, 4)); // 16 samples: window at 8
    expect(next.map((x) => [x.offset, x.data[0]])).toEqual([[8, 8]]);
    expect(w.pendingSamples()).toBe(4);
    expect(w.resets).toBe(0);
  });

  it('restarts after a timestamp gap, counts the reset and never cuts a window across the gap', () => {
    const w = new Windower(spec);
    w.push(block(0, 0, 6));
    const after = w.push(block(100, 500, 8)); // 94 ms of samples missing
    expect(w.resets).toBe(1);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ offset: 0, start: 100 });
    expect(after[0].data[0]).toBe(500);
    w.push(block(50, 0, 2)); // time going back is a gap too
    expect(w.resets).toBe(2);
  });
});
