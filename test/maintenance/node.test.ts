import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WaveFile } from 'wavefile';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { queryDecisions } from '../../src/audit/query';
import { parseWav } from '../../src/ingest/kinds/signal/wav';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { attachMetrics } from '../../src/node/metrics';
import { finalSummary } from '../../src/node/summary';
import { sgmoe } from '../helpers/cli';
import { Mosquitto, MosquittoSub, waitUntil } from '../helpers/mqtt';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const PACKAGE = resolve(__dirname, '..', '..', 'models', 'bearing-sgmoe');
const manifest = JSON.parse(readFileSync(join(PACKAGE, 'manifest.json'), 'utf8'));
const { sampleRate, channels, window, hop } = manifest.input;
const sampleFiles = readdirSync(join(PACKAGE, 'samples')).filter((f) => f.endsWith('.wav'));
const tmp = tempDir('sgmoe-maintenance-');
let broker: Mosquitto;

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await broker.start();
});

afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

/** One channel array per axis of a shipped sample window. */
function sampleChannels(i: number): Float32Array[] {
  return parseWav(readFileSync(join(PACKAGE, 'samples', sampleFiles[i % sampleFiles.length])), 'sample').samples;
}

function wav(data: ArrayLike<number>[], rate = sampleRate, bitDepth = '32f'): Buffer {
  const w = new WaveFile();
  w.fromScratch(data.length, rate, bitDepth, data.map((c) => Array.from(c)));
  return Buffer.from(w.toBuffer());
}

/** A block in the documented binary format (docs/signal-blocks.md), `data` one array per channel. */
function binaryBlock(ts: number, data: Float32Array[], rate = sampleRate): Buffer {
  const n = data[0].length;
  const out = Buffer.alloc(32 + n * data.length * 4);
  out.write('SGSB', 0, 'latin1');
  out.writeUInt8(1, 4);
  out.writeUInt8(data.length, 5);
  out.writeUInt16LE(1, 6);
  out.writeDoubleLE(ts, 8);
  out.writeDoubleLE(rate, 16);
  out.writeFloatLE(1800, 24);
  for (let i = 0; i < n; i++) for (let c = 0; c < data.length; c++) out.writeFloatLE(data[c][i], 32 + 4 * (i * data.length + c));
  return out;
}

function jsonBlock(ts: number, data: Float32Array[], rate = sampleRate): string {
  const samples = Array.from({ length: data[0].length }, (_, i) => data.map((c) => (Number.isNaN(c[i]) ? null : c[i])));
  return JSON.stringify({ ts, sampleRate: rate, channels: data.length, samples, rpm: 1800 });
}

/** mosquitto_pub: an independent client publishing a file's bytes (binary or JSON); resolves when it has exited. */
async function mosquittoPub(topic: string, payload: Buffer | string): Promise<void> {
  const file = join(tmp.path, `block-${process.hrtime.bigint()}`);
  writeFileSync(file, payload);
  const child = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-t', topic, '-f', file]);
  const status = await new Promise((resolve) => child.once('exit', resolve));
  if (status !== 0) throw new Error(`mosquitto_pub exited with ${status}`);
}

describe('maintenance node end to end (models/bearing-sgmoe)', () => {
  it('sgmoe model verify passes on the shipped signal package', () => {
    const run = sgmoe('model', 'verify', PACKAGE);
    expect(run.stdout).toContain('verified');
    expect(run.status).toBe(0);
  });

  jest.setTimeout(240_000);
  it('WAV files in a hot folder and a live stream of blocks sent with mosquitto_pub: results on MQTT with the condition and regime, audit rows, every bad input rejected with its code, the accounting adds up', async () => {
    const dir = join(tmp.path, 'e2e');
    const inbox = join(dir, 'inbox');
    mkdirSync(inbox, { recursive: true });
    // A recording of 2 windows of samples back to back: windows every hop -> 1 + window / hop windows.
    const long = sampleChannels(0).map((c, a) => Float32Array.from([...c, ...sampleChannels(1)[a]]));
    const files: Record<string, Buffer> = {
      'a-recording.wav': wav(long),
      'b-pcm16.wav': wav(sampleChannels(2).map((c) => Array.from(c, (v) => Math.round(Math.max(-1, Math.min(1, v / 4)) * 32767))), sampleRate, '16'),
      'c-rate.wav': wav(sampleChannels(3), sampleRate / 2),
      'd-channels.wav': wav(sampleChannels(3).slice(0, 2)),
      'e-nan.wav': wav(sampleChannels(3).map((c, a) => (a === 1 ? Float32Array.from(c, (v, i) => (i === 100 ? NaN : v)) : c))),
      'f-truncated.wav': wav(sampleChannels(4)).subarray(0, 5000),
      'g-empty.wav': Buffer.alloc(0),
      // A dead sensor: one window of zeros on every channel, which the model would name a condition.
      'h-dead.wav': wav(sampleChannels(3).map((c) => new Float32Array(c.length))),
    };
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(inbox, name), bytes);

    const topic = 'plant/press-7/vibration';
    const sub = new MosquittoSub(broker.port, 'sgmoe/v1/plant/pdm/#', ['-q', '1']);
    const config = parseNodeConfig({
      model: PACKAGE,
      device: 'x86_64-cpu',
      threads: 1,
      sources: [{ uri: `dir:${inbox}`, name: 'inbox' }, { uri: `mqtt:${topic}`, name: 'press-7' }],
      mqtt: { url: broker.url, site: 'plant', device: 'pdm' },
      audit: { file: join(dir, 'audit.db') },
      conditionAlarms: { windows: 2 },
    });
    const { node } = await createEdgeNode(config);
    const running = node.run();
    const streamStats = () => node.snapshot().sources.find((s) => s.name === 'press-7')!;
    // The node's subscription is ready once a probe (an empty block, rejected as E_SIGNAL_EMPTY) comes back rejected.
    const probe = JSON.stringify({ ts: 0, sampleRate, channels, samples: [] });
    while (streamStats().rejected === 0) await mosquittoPub(topic, probe);
    await waitUntil(() => streamStats().rejected === streamStats().ingested, 10_000, 'the probes settled');
    const probes = streamStats().rejected;

    // The stream: one window and a half in 3 blocks (binary, JSON, binary), then a gap, then bad blocks.
    const period = 1000 / sampleRate;
    const piece = (c: Float32Array[], from: number, to: number) => c.map((x) => x.subarray(from, to));
    const s5 = sampleChannels(5);
    const t0 = Date.now();
    await mosquittoPub(topic, binaryBlock(t0, piece(s5, 0, 4096)));
    await mosquittoPub(topic, jsonBlock(t0 + 4096 * period, piece(s5, 4096, 6144)));
    await mosquittoPub(topic, binaryBlock(t0 + 6144 * period, [...piece(s5, 6144, 8192).map((c, a) => Float32Array.from([...c, ...s5[a].subarray(0, 4096)]))]));
    await mosquittoPub(topic, binaryBlock(t0 + 60_000, piece(s5, 0, 2048))); // a gap: the stream restarts
    await mosquittoPub(topic, binaryBlock(t0 + 60_000 + 2048 * period, piece(s5, 0, 2048), sampleRate * 2));
    // A window's worth with a missing value: the window over it (the first after the restart) is rejected as NaN.
    await mosquittoPub(topic, jsonBlock(t0 + 60_000 + 2048 * period, piece(s5, 0, window).map((c) => Float32Array.from(c, (v, i) => (i === 3 ? NaN : v)))));
    await mosquittoPub(topic, binaryBlock(t0 + 60_000 + 2048 * period, piece(s5, 0, 16).slice(0, 1)));

    const fileWindows = 1 + window / hop + 1; // the 2-window recording, then the PCM16 sample
    const expected = { decided: fileWindows + 2, rejected: 6 + 3 + probes };
    await waitUntil(() => {
      const t = node.snapshot().totals;
      return t.decided >= expected.decided && t.rejected >= expected.rejected;
    }, 120_000, 'every window and bad input settled');
    await node.stop();
    await running;

    const snap = node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: expected.decided + expected.rejected, ...expected, dropped: 0, pending: 0 });
    for (const s of snap.sources) expect(s.ingested).toBe(s.decided + s.rejected + s.dropped + s.pending);

    const rows = (() => {
      const conn = openAuditDbReadOnly(join(dir, 'audit.db'));
      try {
        return queryDecisions(conn, {}, { limit: 1000 });
      } finally {
        conn.close();
      }
    })();
    const codes = rows.filter((r) => r.status === 'rejected' && !(r.source === 'press-7' && r.errorCode === 'E_SIGNAL_EMPTY')).map((r) => [r.source, r.errorCode]);
    expect(codes.sort()).toEqual(
      [
        ['inbox', 'E_SIGNAL_RATE'],
        ['inbox', 'E_SIGNAL_CHANNELS'],
        ['inbox', 'E_SIGNAL_NAN'],
        ['inbox', 'E_SIGNAL_TRUNCATED'],
        ['inbox', 'E_SIGNAL_EMPTY'],
        ['inbox', 'E_SIGNAL_FLAT'],
        ['press-7', 'E_SIGNAL_RATE'],
        ['press-7', 'E_SIGNAL_NAN'],
        ['press-7', 'E_SIGNAL_CHANNELS'],
      ].sort(),
    );
    const decided = rows.filter((r) => r.status === 'ok');
    expect(decided).toHaveLength(expected.decided);

    await waitUntil(() => sub.lines.filter((l) => l.includes('/result ')).length >= expected.decided, 15_000, 'results on MQTT');
    await sub.stop();
    const results = sub.messages().filter(([t]) => t.endsWith('/result')).map(([, m]) => m);
    expect(new Set(results.map((m) => m.frameId))).toEqual(new Set(decided.map((r) => r.frameId)));
    for (const m of results) {
      expect(manifest.labels).toContain(m.condition);
      expect(m.condition).toBe(m.label);
      expect(m.regimeExpert).toEqual(expect.any(Number));
      expect(typeof m.unknownRegime).toBe('boolean');
      expect(m.gate).toHaveLength(manifest.parts.experts.length);
      // Where the window lies in its signal: a stream's windows say when their first sample was taken.
      expect(m.window).toEqual(expect.objectContaining({ offset: expect.any(Number) }));
      if (m.source === 'press-7') expect(Date.parse(m.window.start)).toBeGreaterThanOrEqual(t0);
      else expect(m.window.start).toBeUndefined();
    }
    // Each audit row keeps its window's place as the result gives it: a row leads back to its samples and regime.
    const placeOf = new Map(results.map((m) => [m.frameId, m.window]));
    for (const r of decided) {
      const w = placeOf.get(r.frameId);
      expect(r.window).toEqual({ offset: w.offset, start: w.start === undefined ? null : Date.parse(w.start), rpm: w.rpm ?? null, load: w.load ?? null });
    }
    expect(decided.filter((r) => r.source === 'press-7').every((r) => r.window?.rpm === 1800)).toBe(true);
    const streamStarts = results.filter((m) => m.source === 'press-7').map((m) => m.window.start as string).sort();
    expect(streamStarts[0]).toBe(new Date(t0).toISOString());
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['a-recording.wav', 'b-pcm16.wav']);
  });

  it('sgmoe infer on a signal package names the command that decides recordings, instead of rejecting each file', () => {
    const run = sgmoe('infer', '--model', PACKAGE, join(PACKAGE, 'samples', sampleFiles[0]));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`E_USAGE: sgmoe infer decides image files; bearing-sgmoe takes signal windows: run sgmoe run --model ${PACKAGE} --source dir:FOLDER --once`);
    expect(run.stdout).toBe('');
  });

  it('refuses a normal condition the package cannot decide (a typo would make every first condition an alarm), two sources of one name, a gain on images', async () => {
    await expect(createEdgeNode(parseNodeConfig({ model: PACKAGE, threads: 1, once: true, conditionAlarms: { normal: 'Healthy' } }))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: expect.stringContaining('conditionAlarms.normal: expected one of bearing-sgmoe\'s conditions (ball, healthy, inner, outer), found "Healthy"'),
    });
    await expect(createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1, once: true, sources: [{ uri: 'dir:/tmp', gain: 2 }] }))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: 'source dir:/tmp: gain scales signal samples; this package reads images',
    });
    expect(() => parseNodeConfig({ model: PACKAGE, sources: [{ uri: 'dir:a', name: 'cam' }, { uri: 'dir:b', name: 'cam' }] })).toThrow(
      expect.objectContaining({ code: 'E_CONFIG_INVALID', message: expect.stringContaining('sources.1.name: expected a name of its own, found "cam" again') }),
    );
  });

  it('a machine out of its normal condition is an active alarm in the snapshot, the summary, /metrics and audit stats, over a restart until it is back', async () => {
    const dir = join(tmp.path, 'condition');
    const inbox = join(dir, 'inbox');
    mkdirSync(inbox, { recursive: true });
    const inner = readFileSync(join(PACKAGE, 'samples', sampleFiles.find((f) => f.endsWith('-inner.wav'))!));
    // Decided in name order: two inner windows raise the alarm (windows: 2).
    for (const name of ['a.wav', 'b.wav']) writeFileSync(join(inbox, name), inner);
    const auditFile = join(dir, 'audit.db');
    const config = parseNodeConfig({ model: PACKAGE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}`, name: 'press-7' }], audit: { file: auditFile }, conditionAlarms: { windows: 2 }, once: true });
    const { node } = await createEdgeNode(config);
    await node.run();
    const snap = node.snapshot();
    const change = snap.conditionAlarms.find((a) => a.kind === 'condition_change');
    expect(change).toMatchObject({ machine: 'press-7', message: expect.stringContaining('-> inner') });
    expect(finalSummary(snap)).toMatch(/alarms +condition_change \(press-7\)/);
    expect(finalSummary(snap)).toContain(change!.message);
    const metrics = await attachMetrics(node).registry.metrics();
    expect(metrics).toContain('sgmoe_condition_alarms_active{kind="condition_change",machine="press-7"} 1');
    await node.stop();
    const stats = sgmoe('audit', 'stats', '--db', auditFile);
    expect(stats.stdout).toMatch(/active: condition_change \(press-7\) since/);

    // The next run takes up the open alarm: the machine back to healthy clears it in the log.
    const healthy = readFileSync(join(PACKAGE, 'samples', sampleFiles.find((f) => f.endsWith('-healthy.wav'))!));
    for (const name of ['c.wav', 'd.wav']) writeFileSync(join(inbox, name), healthy);
    const again = await createEdgeNode(config);
    expect(again.node.snapshot().conditionAlarms.map((a) => a.kind)).toContain('condition_change');
    await again.node.run();
    await again.node.stop();
    expect(again.node.snapshot().conditionAlarms.map((a) => a.kind)).not.toContain('condition_change');
    expect(sgmoe('audit', 'stats', '--db', auditFile).stdout).not.toMatch(/active: .*condition_change/);
  });
});
