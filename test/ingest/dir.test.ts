import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { SgmoeError } from '../../src/errors';
import { DirSource, Preprocessor, type Frame, type FrameSource } from '../../src/ingest';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { GRAY_28, encodeGray, grayPixels, pngBomb } from './images';

const FAST = { pollMs: 20, stableMs: 60 };

/** The edge node's loop in miniature: preprocess each frame, settle it as decided or rejected. */
async function drain(source: FrameSource, pre: Preprocessor, until?: (seen: Frame[]) => boolean): Promise<Frame[]> {
  const seen: Frame[] = [];
  for await (const frame of source) {
    seen.push(frame);
    try {
      await pre.toTensor(frame);
      await source.settle(frame, { status: 'decided' });
    } catch (err) {
      await source.settle(frame, { status: 'rejected', error: err as SgmoeError });
    }
    if (until?.(seen)) break;
  }
  return seen;
}

describe('DirSource (dir:PATH hot folder)', () => {
  const tmp = tempDir('sgmoe-dir-');
  afterAll(() => tmp.cleanup());
  const pre = new Preprocessor(GRAY_28);
  let png: Buffer;
  let jpeg: Buffer;
  beforeAll(async () => {
    png = await encodeGray(grayPixels(28, 28, (x, y) => x * 9 + y), 28, 28).png().toBuffer();
    jpeg = await encodeGray(grayPixels(200, 150, (x, y) => (x * y) & 255), 200, 150).jpeg({ quality: 90 }).toBuffer();
  });

  test('says once that a subfolder (a data set copied in with its class folders) is left alone, and takes only the top-level files', async () => {
    const inbox = join(tmp.path, 'nested');
    mkdirSync(join(inbox, 'healthy'), { recursive: true });
    writeFileSync(join(inbox, 'healthy', 'a.png'), png);
    writeFileSync(join(inbox, 'top.png'), png);
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const seen = await drain(new DirSource(inbox, { ...FAST, once: true, logger }), pre);
    expect(seen.map((f) => f.meta?.file)).toEqual(['top.png']);
    const warnings = lines.map((l) => JSON.parse(l) as { msg: string; folder?: string }).filter((l) => l.folder);
    expect(warnings).toEqual([expect.objectContaining({ folder: 'healthy', msg: expect.stringContaining('a hot folder takes the files at its top level only') })]);
    expect(existsSync(join(inbox, 'healthy', 'a.png'))).toBe(true);
  });

  test('says once per link that it is left alone (a link may point anywhere), and takes only the regular files', async () => {
    const inbox = join(tmp.path, 'links');
    mkdirSync(inbox);
    writeFileSync(join(tmp.path, 'outside.png'), png);
    symlinkSync(join(tmp.path, 'outside.png'), join(inbox, 'a-link.png'));
    symlinkSync(join(tmp.path, 'nowhere.png'), join(inbox, 'b-dangling.png'));
    symlinkSync('/etc/passwd', join(inbox, 'c-passwd.jpg'));
    writeFileSync(join(inbox, 'd-real.png'), png);
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    // The folder is listed several times before the file is stable: each link is said once all the same.
    const seen = await drain(new DirSource(inbox, { ...FAST, once: true, logger }), pre);
    expect(seen.map((f) => f.meta?.file)).toEqual(['d-real.png']);
    const warnings = lines.map((l) => JSON.parse(l) as { msg: string; link?: string }).filter((l) => l.link);
    expect(warnings).toEqual(
      ['a-link.png', 'b-dangling.png', 'c-passwd.jpg'].map((link) => expect.objectContaining({ link, msg: expect.stringContaining(`${link} in ${inbox} is a link, left alone`) })),
    );
    expect(readdirSync(inbox).sort()).toEqual(['a-link.png', 'b-dangling.png', 'c-passwd.jpg', 'done', 'rejected']);
  });

  test('--once: every file there is taken once, good ones go to done/, bad ones to rejected/ with the reason', async () => {
    const inbox = join(tmp.path, 'once');
    mkdirSync(inbox);
    const files: Record<string, Buffer> = {
      'a-good.png': png,
      'b-good.jpg': jpeg,
      'c-empty.jpg': Buffer.alloc(0),
      'd-truncated.jpg': jpeg.subarray(0, 600),
      'e-text.jpg': Buffer.from('this is not an image\n'),
      'f-bomb.png': pngBomb(100_000, 100_000),
      'g-good.png': png,
    };
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(inbox, name), bytes);
    writeFileSync(join(inbox, '.h-uploading.jpg'), jpeg); // hidden: still being uploaded
    writeFileSync(join(inbox, 'i-copy.jpg.part'), jpeg);

    const source = new DirSource(inbox, { ...FAST, once: true });
    const seen = await drain(source, pre);

    expect(seen.map((f) => f.meta?.file)).toEqual(Object.keys(files));
    expect(seen[0].id).toMatch(new RegExp(`^${join(inbox, 'a-good.png')}@\\d+$`));
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['a-good.png', 'b-good.jpg', 'g-good.png']);
    const reasons = Object.fromEntries(
      readdirSync(join(inbox, 'rejected'))
        .filter((n) => n.endsWith('.reason.txt'))
        .map((n) => [n.replace('.reason.txt', ''), readFileSync(join(inbox, 'rejected', n), 'utf8').split(':')[0]]),
    );
    expect(reasons).toEqual({
      'c-empty.jpg': 'E_FRAME_EMPTY',
      'd-truncated.jpg': 'E_FRAME_DECODE',
      'e-text.jpg': 'E_FRAME_FORMAT',
      'f-bomb.png': 'E_FRAME_TOO_LARGE',
    });
    expect(readdirSync(join(inbox, 'rejected'))).toHaveLength(8);
    expect(readdirSync(inbox).sort()).toEqual(['.h-uploading.jpg', 'done', 'i-copy.jpg.part', 'rejected']);
    expect(source.stats()).toMatchObject({ frames: 7, decided: 3, rejected: 4, dropped: 0, queued: 0, errors: 0 });
  });

  test('a file being written is taken only once its size is stable, with all its bytes', async () => {
    const inbox = join(tmp.path, 'growing');
    mkdirSync(inbox);
    // Stability is timed by a clock that stands still while the file grows, however slowly the machine writes it,
    // and moves on only once the last byte is written.
    let now = 0;
    const source = new DirSource(inbox, { pollMs: 20, stableMs: 600, clock: () => now });
    const it = source[Symbol.asyncIterator]();
    const first = it.next();
    const path = join(inbox, 'slow.jpg');
    // Written in 6 steps, each seen by several polls.
    const step = Math.ceil(jpeg.length / 6);
    writeFileSync(path, jpeg.subarray(0, step));
    for (let at = step; at < jpeg.length; at += step) {
      await new Promise((r) => setTimeout(r, 80));
      appendFileSync(path, jpeg.subarray(at, at + step));
    }
    const ticking = setInterval(() => (now += 100), 20);
    const frame = (await first).value as Frame;
    expect(frame.bytes?.equals(jpeg)).toBe(true);
    await expect(pre.toTensor(frame)).resolves.toHaveLength(784);
    clearInterval(ticking);
    await source.stop();
  });

  test('after a crash before the decision the file is still there, and a restart takes it again', async () => {
    const inbox = join(tmp.path, 'restart');
    mkdirSync(inbox);
    writeFileSync(join(inbox, 'p1.png'), png);
    writeFileSync(join(inbox, 'p2.png'), png);

    // First run: takes p1, then "crashes" (stops without settling it).
    const first = new DirSource(inbox, FAST);
    const it = first[Symbol.asyncIterator]();
    const taken = (await it.next()).value as Frame;
    expect(taken.meta?.file).toBe('p1.png');
    await first.stop();
    expect(existsSync(join(inbox, 'p1.png'))).toBe(true);

    // Second run: both files, the same id for p1 (stable across restarts).
    const second = new DirSource(inbox, { ...FAST, once: true });
    const seen = await drain(second, pre);
    expect(seen.map((f) => f.meta?.file)).toEqual(['p1.png', 'p2.png']);
    expect(seen[0].id).toBe(taken.id);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['p1.png', 'p2.png']);
  });

  test('a reused file name does not overwrite the earlier one in done/', async () => {
    const inbox = join(tmp.path, 'reuse');
    mkdirSync(inbox);
    const source = new DirSource(inbox, FAST);
    writeFileSync(join(inbox, 'snapshot.png'), png);
    const seen = await drain(source, pre, (s) => {
      if (s.length === 1) writeFileSync(join(inbox, 'snapshot.png'), png);
      return s.length === 2;
    });
    expect(seen[0].id).not.toBe(seen[1].id);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['snapshot-1.png', 'snapshot.png']);
  });

  test('a name too long for its reason file beside it is cut (whole characters), so the file still leaves the inbox', async () => {
    const inbox = join(tmp.path, 'long-names');
    const long = {
      rejected: `${'r'.repeat(246)}.jpg`, // 250 bytes: 261 with .reason.txt
      accented: `${'é'.repeat(124)}.jpg`, // 252 bytes
      reused: `${'d'.repeat(251)}.png`, // 255 bytes: no room for -1
    };
    mkdirSync(join(inbox, 'done'), { recursive: true });
    writeFileSync(join(inbox, 'done', long.reused), png);
    writeFileSync(join(inbox, long.rejected), 'not an image\n');
    writeFileSync(join(inbox, long.accented), 'not an image either\n');
    writeFileSync(join(inbox, long.reused), png);
    const source = new DirSource(inbox, { ...FAST, once: true });
    await drain(source, pre);
    expect(source.stats()).toMatchObject({ frames: 3, decided: 1, rejected: 2, errors: 0 });
    expect(readdirSync(inbox).sort()).toEqual(['done', 'rejected']);
    const rejected = [`${'r'.repeat(240)}.jpg`, `${'é'.repeat(120)}.jpg`];
    expect(readdirSync(join(inbox, 'rejected')).sort()).toEqual(rejected.flatMap((n) => [n, `${n}.reason.txt`]).sort());
    for (const n of rejected) expect(readFileSync(join(inbox, 'rejected', `${n}.reason.txt`), 'utf8')).toMatch(/^E_FRAME_FORMAT: /);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual([`${'d'.repeat(249)}-1.png`, long.reused]);
  });

  test('block policy: a folder with more files than the queue holds loses none', async () => {
    const inbox = join(tmp.path, 'many');
    mkdirSync(inbox);
    for (let i = 0; i < 12; i++) writeFileSync(join(inbox, `f${String(i).padStart(2, '0')}.png`), png);
    const source = new DirSource(inbox, { ...FAST, once: true, capacity: 2 });
    const seen = await drain(source, pre);
    expect(seen).toHaveLength(12);
    expect(source.stats()).toMatchObject({ frames: 12, decided: 12, dropped: 0 });
  });

  test('--once: a missing folder ends the iteration with E_SOURCE_NOT_FOUND', async () => {
    const errors: string[] = [];
    const source = new DirSource(join(tmp.path, 'nope'), { ...FAST, once: true, onError: (e) => errors.push(e.code) });
    await expect(drain(source, pre)).rejects.toMatchObject({ code: 'E_SOURCE_NOT_FOUND' });
    expect(errors).toEqual(['E_SOURCE_NOT_FOUND']);
    expect(source.stats().lastError?.code).toBe('E_SOURCE_NOT_FOUND');
  });

  test('a path that is a file is refused at once, even by a running node (only a missing folder is waited for)', async () => {
    const file = join(tmp.path, 'not-a-folder');
    writeFileSync(file, 'x');
    await expect(drain(new DirSource(file, FAST), pre)).rejects.toMatchObject({ code: 'E_SOURCE_IO', message: expect.stringContaining('found a file') });
  });

  test('done/ gone since the start (a share mounted over the folder) is made again, and the file moved into it', async () => {
    const inbox = join(tmp.path, 'remounted');
    mkdirSync(inbox);
    let first = true;
    const source = new DirSource(inbox, { ...FAST, once: true });
    writeFileSync(join(inbox, 'a.png'), png);
    const seen: Frame[] = [];
    for await (const frame of source) {
      if (first) rmSync(join(inbox, 'done'), { recursive: true });
      first = false;
      seen.push(frame);
      await source.settle(frame, { status: 'decided' });
    }
    expect(seen).toHaveLength(1);
    expect(readdirSync(join(inbox, 'done'))).toEqual(['a.png']);
  });

  test('a running node waits for a missing folder (said once, counted), then takes the files put in it', async () => {
    const inbox = join(tmp.path, 'later');
    const errors: Array<{ code: string; message: string }> = [];
    let appear: () => void = () => undefined;
    const reported = new Promise<void>((resolve) => (appear = resolve));
    const source = new DirSource(inbox, {
      ...FAST,
      onError: (e) => {
        errors.push({ code: e.code, message: e.message });
        appear();
      },
    });
    const seen = drain(source, pre, (frames) => frames.length === 1);
    await reported;
    mkdirSync(inbox);
    writeFileSync(join(inbox, 'a.png'), png);
    expect((await seen).map((f) => f.meta?.file)).toEqual(['a.png']);
    expect(errors).toEqual([{ code: 'E_SOURCE_NOT_FOUND', message: expect.stringContaining('waiting for it to appear') }]);
    expect(readdirSync(join(inbox, 'done'))).toEqual(['a.png']);
  });

  test('a running node waits for a folder moved away (said, counted) and takes files again once it is back', async () => {
    const inbox = join(tmp.path, 'away');
    mkdirSync(inbox);
    const errors: Array<{ code: string; message: string }> = [];
    let gone: () => void = () => undefined;
    const reported = new Promise<void>((resolve) => (gone = resolve));
    const source = new DirSource(inbox, {
      ...FAST,
      onError: (e) => {
        errors.push({ code: e.code, message: e.message });
        gone();
      },
    });
    const seen = drain(source, pre, (frames) => frames.length === 2);
    writeFileSync(join(inbox, 'a.png'), png);
    await waitUntil(() => existsSync(join(inbox, 'done', 'a.png')), 10_000, 'a.png to be moved to done/');
    renameSync(inbox, `${inbox}-elsewhere`);
    await reported;
    renameSync(`${inbox}-elsewhere`, inbox);
    writeFileSync(join(inbox, 'b.png'), png);
    expect((await seen).map((f) => f.meta?.file)).toEqual(['a.png', 'b.png']);
    expect(errors).toEqual([{ code: 'E_SOURCE_NOT_FOUND', message: expect.stringContaining('waiting for it to appear') }]);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(['a.png', 'b.png']);
    expect(existsSync(`${inbox}-elsewhere`)).toBe(false);
  });

  test('a frame settled while its folder is away does not make the folder again (moved back, it would land inside)', async () => {
    const inbox = join(tmp.path, 'in-flight');
    mkdirSync(inbox);
    writeFileSync(join(inbox, 'a.png'), png);
    const errors: string[] = [];
    const source = new DirSource(inbox, { ...FAST, onError: (e) => errors.push(e.code) });
    const frame = (await source[Symbol.asyncIterator]().next()).value as Frame;
    renameSync(inbox, `${inbox}-elsewhere`);
    await source.settle(frame, { status: 'decided' });
    await source.stop();
    expect(existsSync(inbox)).toBe(false);
    expect(errors).toContain('E_SOURCE_IO');
    expect(readdirSync(`${inbox}-elsewhere`).sort()).toEqual(['a.png', 'done', 'rejected']);
  });
});
