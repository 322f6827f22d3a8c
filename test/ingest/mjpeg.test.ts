import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SgmoeError } from '../../src/errors';
import { MjpegSource, Preprocessor, type Frame } from '../../src/ingest';
import { MultipartParser, boundaryOf } from '../../src/ingest/multipart';
import { GRAY_28, encodeGray, grayPixels } from './images';

const part = (body: Buffer, withLength = true): Buffer =>
  Buffer.concat([
    Buffer.from(`--frame\r\nContent-Type: image/jpeg\r\n${withLength ? `Content-Length: ${body.length}\r\n` : ''}\r\n`),
    body,
    Buffer.from('\r\n'),
  ]);

describe('MultipartParser', () => {
  test('parts come out whole however the stream is chunked, with or without Content-Length', () => {
    const bodies = [Buffer.from('\xff\xd8first\r\n--fram', 'latin1'), Buffer.from('second'), Buffer.alloc(0)];
    const stream = Buffer.concat([Buffer.from('\r\n'), part(bodies[0]), part(bodies[1], false), part(bodies[2]), Buffer.from('--frame\r\n')]);
    for (const size of [1, 3, 7, stream.length]) {
      const parser = new MultipartParser('frame');
      const got: Buffer[] = [];
      const problems: string[] = [];
      for (let i = 0; i < stream.length; i += size) {
        const out = parser.push(stream.subarray(i, i + size));
        got.push(...out.parts.map((p) => p.body));
        problems.push(...out.problems);
      }
      expect(got.map((b) => b.toString('latin1'))).toEqual(bodies.map((b) => b.toString('latin1')));
      expect(problems).toEqual([]);
    }
  });

  test('junk is reported and skipped; the parser resynchronises on the next boundary', () => {
    const parser = new MultipartParser('frame', 1000);
    const out = parser.push(
      Buffer.concat([Buffer.from('HTTP junk before the first boundary'), part(Buffer.from('a')), Buffer.from('--frame\r\nno blank line after headers'), part(Buffer.from('b')), Buffer.from('--frame\r\n')]),
    );
    expect(out.parts.map((p) => p.body.toString())).toEqual(['a', 'b']);
    expect(out.problems).toHaveLength(2);
    expect(out.problems[0]).toContain('expected a boundary');
    expect(out.problems[1]).toContain('expected part headers');
    expect(parser.push(Buffer.alloc(20_000, 0x41)).problems).toEqual([expect.stringContaining('headers of at most 16384 bytes')]);
    const oversized = parser.push(Buffer.concat([Buffer.from('\r\n--frame\r\n\r\n'), Buffer.alloc(2000, 0x42), Buffer.from('\r\n--frame\r\n')]));
    expect(oversized).toEqual({ parts: [], problems: [expect.stringContaining('at most 1000 bytes, found 2000')] });
    const declared = parser.push(Buffer.from('Content-Length: 5000\r\n\r\n'));
    expect(declared.problems).toEqual([expect.stringContaining('found Content-Length 5000')]);
    expect(parser.push(Buffer.concat([Buffer.from('\r\n'), part(Buffer.from('c')), Buffer.from('--frame\r\n')])).parts.map((p) => p.body.toString())).toEqual(['c']);
  });

  test('boundaryOf reads the content type, with or without quotes and dashes', () => {
    expect(boundaryOf('multipart/x-mixed-replace; boundary=frame')).toBe('frame');
    expect(boundaryOf('multipart/x-mixed-replace;boundary="--myboundary"')).toBe('myboundary');
    expect(boundaryOf('image/jpeg')).toBeUndefined();
    expect(boundaryOf(null)).toBeUndefined();
  });
});

describe('MjpegSource (mjpeg+http:// stream)', () => {
  const pre = new Preprocessor(GRAY_28);
  let server: Server;
  let url: string;
  let connections = 0;
  const jpegs: Buffer[] = [];

  /** Per connection: a script of writes; `null` drops the connection, a number pauses, 'stall' goes silent. */
  const scripts: Array<Array<Buffer | number | null | 'stall'>> = [];

  beforeAll(async () => {
    for (let i = 0; i < 6; i++) jpegs.push(await encodeGray(grayPixels(64, 48, (x, y) => (x * (i + 1) + y) & 255), 64, 48).jpeg().toBuffer());
    const play = async (res: ServerResponse, script: Array<Buffer | number | null | 'stall'>) => {
      for (const step of script) {
        if (res.destroyed) return;
        if (step === null) return void res.socket?.destroy();
        if (step === 'stall') return;
        if (typeof step === 'number') await new Promise((r) => setTimeout(r, step));
        else res.write(step);
      }
    };
    server = createServer((req, res) => {
      if (req.url === '/not-multipart') return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpegs[0]);
      const script = scripts[connections++] ?? ['stall'];
      res.writeHead(200, { 'content-type': 'multipart/x-mixed-replace; boundary=frame' });
      void play(res, script);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `mjpeg+http://127.0.0.1:${(server.address() as AddressInfo).port}/video`;
  });
  // A failed test must not leave a source reconnecting forever.
  const sources: MjpegSource[] = [];
  afterEach(async () => {
    await Promise.all(sources.splice(0).map((s) => s.stop()));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('garbage in a part, junk between parts, a dropped and a stalled stream: each accounted for, the next frames go through', async () => {
    scripts.push(
      [part(jpegs[0]), part(Buffer.from('GARBAGE GARBAGE')), Buffer.from('--frame\r\njunk without headers\r\n'), part(jpegs[1]), part(jpegs[2]).subarray(0, 300), 20, null],
      [part(jpegs[3]), part(jpegs[4].subarray(0, 500)), 'stall'],
      [part(jpegs[5]), part(jpegs[0])],
    );
    const errors: SgmoeError[] = [];
    // The stall timeout is far above any gap a busy machine puts between parts, so only the scripted stall trips it.
    const source = new MjpegSource(url, { timeoutMs: 3000, backoff: { initialMs: 10, maxMs: 20 }, capacity: 16, policy: 'block', onError: (e) => errors.push(e) });
    sources.push(source);
    const outcomes: string[] = [];
    const frames: Frame[] = [];
    for await (const frame of source) {
      frames.push(frame);
      try {
        await pre.toTensor(frame);
        outcomes.push('ok');
        await source.settle(frame, { status: 'decided' });
      } catch (err) {
        outcomes.push((err as SgmoeError).code);
        await source.settle(frame, { status: 'rejected', error: err as SgmoeError });
      }
      if (frames.length === 7) break;
    }
    // Connection 1: ok, garbage, [junk], ok, then cut off in the middle of a part (which never became a frame).
    // Connection 2: ok, a truncated JPEG (complete by its Content-Length, so not held back), then silence.
    // Connection 3: ok, ok.
    expect(outcomes).toEqual(['ok', 'E_FRAME_FORMAT', 'ok', 'ok', 'E_FRAME_DECODE', 'ok', 'ok']);
    expect(frames[0].bytes?.equals(jpegs[0])).toBe(true);
    expect(frames[5].bytes?.equals(jpegs[5])).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['E_SOURCE_STREAM', 'E_SOURCE_STREAM', 'E_SOURCE_TIMEOUT']);
    expect(errors[1].message).toContain('cut off');
    expect(connections).toBe(3);
    expect(source.stats()).toMatchObject({ frames: 7, decided: 5, rejected: 2, dropped: 0, errors: 3 });
  });

  test('a response that is not multipart is a stream error, retried', async () => {
    const errors: SgmoeError[] = [];
    const source = new MjpegSource(url.replace('/video', '/not-multipart'), { backoff: { initialMs: 10, maxMs: 10 }, onError: (e) => errors.push(e) });
    sources.push(source);
    const it = source[Symbol.asyncIterator]();
    void it.next();
    while (errors.length < 2) await new Promise((r) => setTimeout(r, 10));
    await source.stop();
    expect(errors[0]).toMatchObject({ code: 'E_SOURCE_STREAM', message: expect.stringContaining('found image/jpeg') });
    expect(source.stats().frames).toBe(0);
  });
});
