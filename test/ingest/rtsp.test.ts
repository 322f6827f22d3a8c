import type { InputSpec } from '../../src/model/manifest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { Decision } from '../../src/engine/decision';
import type { SgmoeError } from '../../src/errors';
import { RtspSource, type Frame } from '../../src/ingest';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { BUNDLED, readManifest } from '../helpers/package';
import { RtspServer } from '../helpers/rtsp';
import { tempDir } from '../helpers/tmp';
import { samplesClip } from '../helpers/video';

const tmp = tempDir();
const input = readManifest(BUNDLED).input as InputSpec;
const credentials = { user: 'line3', password: 's3cret-pw' };
afterAll(() => tmp.cleanup());

/** A promise that resolves the first time `test` holds for a value handed to the returned `check`. */
function when<T>(test: (value: T) => boolean): { promise: Promise<T>; check: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, check: (value) => test(value) && resolve(value) };
}

/** The pid of the RTSP server process listening on `port` (test/helpers/rtsp_server.py), found in /proc. */
function serverPid(port: number): number {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.endsWith('rtsp_server.py')) && argv.includes(String(port))) return Number(pid);
    } catch {
      // gone since the listing
    }
  }
  throw new Error(`no RTSP server on port ${port}`);
}

/** Frames of a source, each settled as decided, until the source is stopped. */
async function consume(source: RtspSource, onFrame: (frame: Frame) => void): Promise<void> {
  for await (const frame of source) {
    onFrame(frame);
    await source.settle(frame, { status: 'decided' });
  }
}

describe('rtsp:// cameras (a real GStreamer RTSP server, decoded by ffmpeg)', () => {
  test('results reach MQTT; a camera server killed mid-stream and restarted is reconnected (counted) and the node keeps deciding', async () => {
    const server = await RtspServer.create('live', credentials);
    await server.start();
    const errors: SgmoeError[] = [];
    const source = new RtspSource(server.url(), { input, backoff: { initialMs: 50, maxMs: 200 }, onError: (e) => errors.push(e) });
    const { node, broker } = await createEdgeNode(
      parseNodeConfig({ model: BUNDLED, device: 'x86_64-cpu', threads: 1, mqtt: { embeddedBroker: { port: 0 }, site: 'plant', device: 'cam' } }),
      { extraSources: [{ source, preprocess: {} }] },
    );
    const decisions: Decision[] = [];
    const firstRun = when<Decision[]>((ds) => ds.length >= 5);
    // Frame ids carry the decoder run: `-1@pts` before the reconnect, a later run after it.
    const secondRun = when<Decision[]>((ds) => ds.some((d) => !/-1@\d+$/.test(d.frameId)));
    node.on('decision', (_frame, d) => {
      decisions.push(d);
      firstRun.check(decisions);
      secondRun.check(decisions);
    });
    const client = await mqtt.connectAsync(broker!.url);
    const published: any[] = [];
    const onMqtt = when<any[]>((ms) => ms.length >= 3);
    client.on('message', (_topic, payload) => {
      published.push(JSON.parse(payload.toString()));
      onMqtt.check(published);
    });
    await client.subscribeAsync('sgmoe/v1/plant/cam/result', { qos: 1 });
    const running = node.run();
    try {
      await firstRun.promise;
      const results = await onMqtt.promise;
      expect(results[0]).toMatchObject({ source: 'rtsp://***@127.0.0.1:' + server.port + '/cam', model: { name: 'fashion-sgmoe' } });
      expect(results[0].frameId).toMatch(/^rtsp:\/\/\*\*\*@127\.0\.0\.1:\d+\/cam#[0-9a-z]+-1@\d+$/);

      await server.stop('SIGKILL');
      await server.start();
      await secondRun.promise;
      const stats = source.stats();
      expect(stats.restarts).toBeGreaterThanOrEqual(1);
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors[0].code).toMatch(/^E_SOURCE_(STREAM|DECODER|UNREACHABLE|TIMEOUT)$/);
    } finally {
      await node.stop();
      await running;
      await client.endAsync();
      await server.stop();
    }
    // Every frame that came in is accounted for; nothing in the counters or logs carries the password.
    const { totals } = node.snapshot();
    expect(totals.ingested).toBe(totals.decided + totals.rejected + totals.dropped + totals.pending);
    expect(totals.pending).toBe(0);
    expect(JSON.stringify([source.stats(), errors.map((e) => e.message), published])).not.toContain(credentials.password);
  });

  test('an ROI outside the camera\'s picture gives E_FRAME_ROI naming both sizes, not a decoder exit', async () => {
    const server = await RtspServer.create('live');
    await server.start();
    const failed = when<SgmoeError>(() => true);
    const roi = { x: 0, y: 0, width: 640, height: 480 };
    const source = new RtspSource(server.url(), { input, preprocess: { roi }, backoff: { initialMs: 50 }, onError: failed.check });
    const consuming = consume(source, () => {});
    try {
      expect(await failed.promise).toMatchObject({ code: 'E_FRAME_ROI', message: expect.stringContaining('expected the ROI 640x480+0+0 inside the frame, found a 320x240 frame') });
    } finally {
      await source.stop();
      await consuming;
      await server.stop();
    }
  });

  test('a hung camera (its server stopped) is E_SOURCE_TIMEOUT on the stream and on the reconnect, where ffmpeg says "Invalid data"', async () => {
    const server = await RtspServer.create('live');
    await server.start();
    const pid = serverPid(server.port);
    const firstFrame = when<Frame>(() => true);
    const errors: SgmoeError[] = [];
    const twoErrors = when<SgmoeError[]>((es) => es.length >= 2);
    const onError = (e: SgmoeError) => {
      errors.push(e);
      twoErrors.check(errors);
    };
    const source = new RtspSource(server.url(), { input, timeoutMs: 500, backoff: { initialMs: 50 }, onError });
    const consuming = consume(source, firstFrame.check);
    try {
      await firstFrame.promise;
      process.kill(pid, 'SIGSTOP');
      await twoErrors.promise;
      expect(errors.slice(0, 2).map((e) => e.code)).toEqual(['E_SOURCE_TIMEOUT', 'E_SOURCE_TIMEOUT']);
      expect(errors[1].message).toContain('within 500 ms');
    } finally {
      process.kill(pid, 'SIGCONT');
      await source.stop();
      await consuming;
      await server.stop();
    }
  });

  test('wrong credentials give E_SOURCE_AUTH naming the source, with the credentials redacted', async () => {
    const server = await RtspServer.create('live', credentials);
    await server.start();
    const refused = when<SgmoeError>(() => true);
    const source = new RtspSource(server.url({ user: 'line3', password: 'wrong-pw' }), { input, backoff: { initialMs: 50 }, onError: refused.check });
    const consuming = consume(source, () => {});
    try {
      const error = await refused.promise;
      expect(error.code).toBe('E_SOURCE_AUTH');
      expect(error.message).toContain(`rtsp://***@127.0.0.1:${server.port}/cam`);
      expect(error.message).toContain('401');
      expect(error.message).not.toContain('wrong-pw');
      expect(source.name).toBe(`rtsp://***@127.0.0.1:${server.port}/cam`);
    } finally {
      await source.stop();
      await consuming;
      await server.stop();
    }
  });

  test('a stream with damaged packets is decoded around the damage: corrupt data counted, frames still come, the source goes on', async () => {
    const clean = readFileSync(samplesClip(join(tmp.path, 'clean.ts'), 'mpegts'));
    const damaged = Buffer.from(clean);
    const packets = damaged.length / 188;
    // Payload bytes of every fifth 188-byte TS packet in the middle third, headers intact.
    for (let p = Math.floor(packets / 3); p < (2 * packets) / 3; p += 5) for (let i = p * 188 + 8; i < p * 188 + 188; i += 3) damaged[i] ^= 0x5a;
    writeFileSync(join(tmp.path, 'damaged.ts'), damaged);
    const server = await RtspServer.create(join(tmp.path, 'damaged.ts'));
    await server.start();
    const ended = when<SgmoeError>(() => true);
    const frames: Frame[] = [];
    const again = when<Frame[]>((fs) => fs.some((f) => !/-1@\d+$/.test(f.id)));
    const source = new RtspSource(server.url(), { input, policy: 'block', backoff: { initialMs: 50 }, onError: ended.check });
    const consuming = consume(source, (frame) => {
      frames.push(frame);
      again.check(frames);
    });
    try {
      // The file ends (the camera "hangs up"), the source says so and connects again.
      expect((await ended.promise).code).toMatch(/^E_SOURCE_(STREAM|DECODER)$/);
      const firstRun = frames.length;
      expect(source.stats().corrupt).toBeGreaterThan(0);
      expect(firstRun).toBeGreaterThan(10);
      await again.promise;
    } finally {
      await source.stop();
      await consuming;
      await server.stop();
    }
    expect(source.stats()).toMatchObject({ restarts: expect.any(Number), rejected: 0 });
    expect(source.stats().restarts).toBeGreaterThanOrEqual(1);
  });
});
