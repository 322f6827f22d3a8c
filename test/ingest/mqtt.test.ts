import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createBroker, type default as Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import type { SgmoeError } from '../../src/errors';
import { MqttSource, Preprocessor, topicMatches, type Frame } from '../../src/ingest';
import { GRAY_28, encodeGray, grayPixels } from './images';

describe('MqttSource (mqtt:TOPIC)', () => {
  let broker: Aedes;
  let server: Server;
  let url: string;
  let publisher: MqttClient;
  let png: Buffer;
  const pre = new Preprocessor(GRAY_28);

  beforeAll(async () => {
    broker = createBroker();
    server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    publisher = await mqtt.connectAsync(url);
    png = await encodeGray(grayPixels(28, 28, (x, y) => x * 9 + y), 28, 28).png().toBuffer();
  });
  afterAll(async () => {
    await publisher.endAsync();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Publishes until the source has taken `count` frames in (the subscription may not be active yet). */
  async function publishUntil(source: MqttSource, topic: string, payloads: Buffer[], count: number): Promise<void> {
    while (source.stats().frames < count) {
      for (const p of payloads) await publisher.publishAsync(topic, p, { qos: 1 });
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test('binary payloads on a wildcard topic become frames; a garbage payload is rejected and the next goes through', async () => {
    const source = new MqttSource('plant/+/camera', { mqtt: url, capacity: 16 });
    const it = source[Symbol.asyncIterator]();
    // Wait until subscribed: the first frames in prove it.
    await publishUntil(source, 'plant/line1/camera', [png], 1);
    await publisher.publishAsync('plant/line2/camera', Buffer.from('garbage'), { qos: 1 });
    await publisher.publishAsync('plant/line2/other', png, { qos: 1 }); // not matched
    await publisher.publishAsync('plant/line3/camera', png, { qos: 1 });
    const frames: Frame[] = [];
    while (frames.at(-1)?.meta?.topic !== 'plant/line3/camera') frames.push((await it.next()).value as Frame);
    const outcomes = await Promise.all(frames.map((f) => pre.toTensor(f).then(() => 'ok', (e: SgmoeError) => e.code)));
    expect(outcomes.slice(-2)).toEqual(['E_FRAME_FORMAT', 'ok']);
    expect(outcomes.slice(0, -2).every((o) => o === 'ok')).toBe(true);
    expect(frames.at(-2)?.meta?.topic).toBe('plant/line2/camera');
    expect(frames.every((f) => f.meta?.topic !== 'plant/line2/other')).toBe(true);
    expect(new Set(frames.map((f) => f.id)).size).toBe(frames.length);
    await source.stop();
  });

  test('a shared client stays connected after stop; a slow consumer makes drops that are counted and reported', async () => {
    const client = await mqtt.connectAsync(url);
    const dropped: Frame[] = [];
    const source = new MqttSource('cam/image', { mqtt: client, capacity: 2, onDrop: (f) => dropped.push(f) });
    const it = source[Symbol.asyncIterator]();
    await publishUntil(source, 'cam/image', [png], 1);
    // Nobody consumes now: 10 more frames into a queue of 2.
    const before = source.stats().frames;
    for (let i = 0; i < 10; i++) await publisher.publishAsync('cam/image', png, { qos: 1 });
    while (source.stats().frames < before + 10) await new Promise((r) => setTimeout(r, 10));
    const s = source.stats();
    expect(s.queued).toBe(2);
    expect(s.dropped).toBe(s.frames - 2);
    expect(dropped).toHaveLength(s.dropped);
    await source.stop();
    const rest: Frame[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(rest).toHaveLength(2);
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  test('an unreachable broker is reported, and stop does not hang waiting for it', async () => {
    const errors: string[] = [];
    const source = new MqttSource('x', { mqtt: 'mqtt://127.0.0.1:1', onError: (e) => errors.push(e.code) });
    const it = source[Symbol.asyncIterator]();
    const end = it.next();
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 20));
    await source.stop();
    expect((await end).done).toBe(true);
    expect(errors[0]).toBe('E_SOURCE_UNREACHABLE');
  });

  test('topicMatches follows MQTT wildcards', () => {
    expect(topicMatches('a/+/c', 'a/b/c')).toBe(true);
    expect(topicMatches('a/+/c', 'a/b/d')).toBe(false);
    expect(topicMatches('a/#', 'a')).toBe(true);
    expect(topicMatches('a/#', 'a/b/c')).toBe(true);
    expect(topicMatches('a/b', 'a/b/c')).toBe(false);
    expect(topicMatches('#', 'x/y')).toBe(true);
  });
});
