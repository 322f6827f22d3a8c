import { BoundedQueue, PushSource, openSource, DirSource, HttpSnapshotSource, MjpegSource, MqttSource } from '../../src/ingest';
import type { Frame } from '../../src/ingest';

/** Whether a promise has settled after the event loop had a chance to run everything pending. */
const state = (p: Promise<unknown>): Promise<'settled' | 'pending'> =>
  Promise.race([p.then(() => 'settled' as const), new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);

describe('BoundedQueue', () => {
  test('block: put waits for room and resumes when the consumer takes', async () => {
    const q = new BoundedQueue<number>(2, 'block');
    await q.put(1);
    await q.put(2);
    const third = q.put(3);
    expect(await state(third)).toBe('pending');
    expect(await q.take()).toEqual({ done: false, value: 1 });
    expect(await state(third)).toBe('settled');
    expect(q.size).toBe(2);
  });

  test('drop-oldest: put never waits; the oldest item goes to onDrop', async () => {
    const dropped: number[] = [];
    const q = new BoundedQueue<number>(2, 'drop-oldest', (n) => dropped.push(n));
    for (let i = 1; i <= 5; i++) expect(await state(q.put(i))).toBe('settled');
    expect(dropped).toEqual([1, 2, 3]);
    expect([(await q.take()).value, (await q.take()).value]).toEqual([4, 5]);
  });

  test('close: the consumer drains what is queued, a blocked producer is admitted, then the end or the failure', async () => {
    const q = new BoundedQueue<number>(1, 'block');
    await q.put(1);
    const blocked = q.put(2);
    q.close();
    await blocked;
    const seen: number[] = [];
    for await (const n of q) seen.push(n);
    expect(seen).toEqual([1, 2]);
    await expect(q.put(3)).rejects.toMatchObject({ code: 'E_SOURCE_STOPPED' });

    const failing = new BoundedQueue<number>(2, 'block');
    await failing.put(7);
    failing.close(new Error('camera gone'));
    expect(await failing.take()).toEqual({ done: false, value: 7 });
    await expect(failing.take()).rejects.toThrow('camera gone');
  });

  test('a capacity below 1 is refused', () => {
    expect(() => new BoundedQueue(0, 'block')).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });
});

describe('PushSource and the per-source queue', () => {
  test('push blocks under the default policy until the consumer takes (backpressure reaches the caller)', async () => {
    const source = new PushSource('line-3', { capacity: 1 });
    const it = source[Symbol.asyncIterator]();
    const first = await source.push(Buffer.from('a'));
    expect(first).toMatch(/^line-3#[0-9a-z]+-1$/);
    const second = source.push(Buffer.from('b'));
    expect(await state(second)).toBe('pending');
    const got = await it.next();
    expect(got.value?.id).toBe(first);
    expect(got.value?.bytes?.toString()).toBe('a');
    expect(await state(second)).toBe('settled');
    source.end();
    expect((await it.next()).value?.bytes?.toString()).toBe('b');
    expect((await it.next()).done).toBe(true);
    await expect(source.push(Buffer.from('c'))).rejects.toMatchObject({ code: 'E_SOURCE_STOPPED' });
  });

  test('drop-oldest counts every drop, reports it, and the counters add up after settling', async () => {
    const dropped: Frame[] = [];
    const source = new PushSource('cam', { capacity: 2, policy: 'drop-oldest', onDrop: (f) => dropped.push(f) });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await source.push({ raw: { data: Buffer.alloc(4), width: 2, height: 2, channels: 1, format: 'gray' } }));
    source.end();
    const seen: Frame[] = [];
    for await (const frame of source) seen.push(frame);
    expect(dropped.map((f) => f.id)).toEqual(ids.slice(0, 3));
    expect(seen.map((f) => f.id)).toEqual(ids.slice(3));
    await source.settle(seen[0], { status: 'decided' });
    const err = Object.assign(new Error('x'), { code: 'E_FRAME_DECODE' });
    await source.settle(seen[1], { status: 'rejected', error: err as never });
    const s = source.stats();
    expect(s).toMatchObject({ frames: 5, dropped: 3, decided: 1, rejected: 1, queued: 0, errors: 0 });
    expect(s.frames).toBe(s.decided + s.rejected + s.dropped + s.queued);
  });

  test('a caller-given id and meta are kept; a second consumer is refused', async () => {
    const source = new PushSource();
    await source.push({ id: 'lot-7/part-12', bytes: Buffer.from('x'), meta: { lot: 7 } });
    const it = source[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ id: 'lot-7/part-12', source: 'push', meta: { lot: 7 } });
    expect(() => source[Symbol.asyncIterator]()).toThrow(expect.objectContaining({ code: 'E_SOURCE_BUSY' }));
    await source.stop();
    expect((await it.next()).done).toBe(true);
  });
});

describe('openSource', () => {
  test('chooses the source by URI scheme', () => {
    expect(openSource('dir:/tmp/in')).toBeInstanceOf(DirSource);
    expect(openSource('http://10.0.0.5/snapshot.jpg')).toBeInstanceOf(HttpSnapshotSource);
    expect(openSource('https://cam.local/snap')).toBeInstanceOf(HttpSnapshotSource);
    const mjpeg = openSource('mjpeg+http://10.0.0.5:8080/video');
    expect(mjpeg).toBeInstanceOf(MjpegSource);
    expect((mjpeg as MjpegSource).url).toBe('http://10.0.0.5:8080/video');
    const mqtt = openSource('mqtt:factory/line3/+/image', { mqtt: 'mqtt://127.0.0.1:1' });
    expect(mqtt).toBeInstanceOf(MqttSource);
    expect(mqtt.name).toBe('mqtt:factory/line3/+/image');
    expect(openSource('dir:/tmp/in', { name: 'inbox' }).name).toBe('inbox');
  });

  test('refuses unknown or incomplete URIs, and mqtt: without a client', () => {
    for (const uri of ['ftp://x/y', '/tmp/in', 'dir:', 'v4l2:', 'video:', 'mqtt:']) {
      expect(() => openSource(uri)).toThrow(expect.objectContaining({ code: 'E_SOURCE_URI', message: expect.stringContaining(JSON.stringify(uri)) }));
    }
    expect(() => openSource('mqtt:cam/image')).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });
});
