import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SgmoeError } from '../../src/errors';
import { HttpSnapshotSource, Preprocessor, type Frame } from '../../src/ingest';
import { freePort } from '../helpers/net';
import { GRAY_28, encodeGray, grayPixels } from './images';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A real HTTP camera on 127.0.0.1 whose next answers the test scripts; requests beyond the script get a JPEG, or
 * `after` when given.
 */
async function camera(jpeg: Buffer, script: Handler[], after?: Handler): Promise<{ server: Server; url: string; requests: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    const handler = script[n++] ?? after;
    if (handler) return handler(req, res);
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/snapshot.jpg`, requests: () => n };
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const sendJpeg = (bytes: Buffer): Handler => (_req, res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end(bytes);

describe('HttpSnapshotSource (http:// snapshot polling)', () => {
  const pre = new Preprocessor(GRAY_28);
  let jpeg: Buffer;
  const servers: Server[] = [];
  beforeAll(async () => {
    jpeg = await encodeGray(grayPixels(160, 120, (x, y) => (x + y) & 255), 160, 120).jpeg().toBuffer();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(close));
  });

  test('polls at the interval; a 500, a timeout and garbage are each accounted for, and the next frame goes through', async () => {
    const hang: Handler = () => {}; // never answers
    const cam = await camera(jpeg, [
      sendJpeg(jpeg),
      (_req, res) => res.writeHead(500, 'Internal Server Error').end('boom'),
      hang,
      sendJpeg(Buffer.from('<html>login required</html>')),
      sendJpeg(jpeg),
    ], hang); // past the script no frame ever comes, so the source cannot fetch a fourth while the third is consumed
    servers.push(cam.server);
    const errors: SgmoeError[] = [];
    const source = new HttpSnapshotSource(cam.url, {
      intervalMs: 10,
      timeoutMs: 300,
      backoff: { initialMs: 10, maxMs: 20 },
      capacity: 8,
      policy: 'block',
      onError: (e) => errors.push(e),
    });
    const results: string[] = [];
    const frames: Frame[] = [];
    for await (const frame of source) {
      frames.push(frame);
      try {
        await pre.toTensor(frame);
        results.push('ok');
        await source.settle(frame, { status: 'decided' });
      } catch (err) {
        results.push((err as SgmoeError).code);
        await source.settle(frame, { status: 'rejected', error: err as SgmoeError });
      }
      if (frames.length === 3) break;
    }
    expect(results).toEqual(['ok', 'E_FRAME_FORMAT', 'ok']);
    // A slow consumer may see the hanging poll after the script time out too: only the scripted two are certain.
    expect(errors.slice(0, 2).map((e) => e.code)).toEqual(['E_SOURCE_HTTP', 'E_SOURCE_TIMEOUT']);
    expect(errors[0].message).toContain('found 500 Internal Server Error');
    expect(new Set(frames.map((f) => f.id)).size).toBe(3);
    expect(frames.every((f) => f.source === cam.url)).toBe(true);
    expect(source.stats()).toMatchObject({ frames: 3, decided: 2, rejected: 1, errors: errors.length });
  });

  test('an unreachable camera is retried with backoff until it comes up, without a frame in between', async () => {
    const port = await freePort();
    const errors: string[] = [];
    const source = new HttpSnapshotSource(`http://127.0.0.1:${port}/snap`, {
      intervalMs: 10,
      timeoutMs: 500,
      backoff: { initialMs: 20, maxMs: 40 },
      onError: (e) => errors.push(e.code),
    });
    const it = source[Symbol.asyncIterator]();
    const next = it.next();
    while (errors.length < 3) await new Promise((r) => setTimeout(r, 20));
    const server = createServer(sendJpeg(jpeg));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const frame = (await next).value as Frame;
    expect(frame.bytes?.equals(jpeg)).toBe(true);
    expect(new Set(errors)).toEqual(new Set(['E_SOURCE_UNREACHABLE']));
    expect(source.stats().frames).toBe(1);
    await source.stop();
  });

  test('drop-oldest (the live default): a slow consumer gets the newest snapshots and every drop is counted', async () => {
    let n = 0;
    const server = createServer((_req, res) => res.writeHead(200).end(Buffer.from(`frame ${++n}`)));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const dropped: Frame[] = [];
    const source = new HttpSnapshotSource(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, {
      intervalMs: 5,
      onDrop: (f) => dropped.push(f),
    });
    const it = source[Symbol.asyncIterator]();
    await it.next();
    while (dropped.length < 3) await new Promise((r) => setTimeout(r, 10));
    await source.stop();
    const rest: Frame[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(rest.length).toBeLessThanOrEqual(2);
    const s = source.stats();
    expect(s.dropped).toBe(dropped.length);
    // Everything taken in is accounted for: 1 consumed + the rest consumed after stop + the dropped ones.
    expect(s.frames).toBe(1 + rest.length + s.dropped);
    // The frames still delivered are the newest ones.
    const numbers = [...dropped, ...rest].map((f) => Number(f.bytes?.toString().split(' ')[1]));
    expect(numbers.slice(-rest.length)).toEqual([...numbers].sort((a, b) => a - b).slice(-rest.length));
  });
});
