import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import pino from 'pino';
import sharp from 'sharp';
import { AuditWriter, Retention, decidedRecord, FrameStore, framesDirOf, latestVerdicts, locateFrame, openAuditDb, openReviewDb, pinFrame, readScoreMap, recordReview, shownKey, standingReviews } from '../../src/audit';
import { sha256Hex } from '../../src/model/integrity';
import { tmpfsTests } from '../helpers/tmpfs';
import { decision } from './records';
import { auditCli as sgmoe } from '../helpers/audit-cli';

const { tmp, disk, onTmpfs } = tmpfsTests('full-disk', 1024 * 1024, 'sgmoe-review-');

/** A distinct 8x8 gray PNG per i. */
const png = (i: number) => sharp(Buffer.alloc(64, i * 7), { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer();

/** A distinct 2x2 score map per i, one cell no finite number (as a broken model output gives). */
const mapOf = (i: number) => ({ grid: [2, 2] as [number, number], map: [i, 0.5, Number.NaN, 1.25] });

/**
 * An audit database with frames f-0..f-(n-1) decided, each with the sha256 of png(i), and those bytes kept as
 * anomalous with their score maps (which no review or export may take for a frame).
 */
async function auditWithFrames(name: string, n: number): Promise<{ file: string; frames: string }> {
  const file = join(tmp, name, 'audit.db');
  mkdirSync(join(tmp, name), { recursive: true });
  const { db } = openAuditDb(file);
  const writer = new AuditWriter(db);
  const store = new FrameStore({ dir: framesDirOf(file), keep: 'all', maxFiles: 1000 });
  for (let i = 0; i < n; i++) {
    const bytes = await png(i);
    writer.record(decidedRecord(decision(i, i % 4), { frameId: `f-${i}`, source: 'dir:/in', inputSha256: sha256Hex(bytes) }, 1_700_000_000_000 + i));
    store.offer(bytes, true, mapOf(i));
  }
  writer.close();
  db.close();
  await store.flush();
  return { file, frames: framesDirOf(file) };
}

describe('operator verdicts', () => {
  it('sgmoe audit review records the verdict with frame, decision, who, when and via, and pins the frame bytes out of eviction', async () => {
    const { file, frames } = await auditWithFrames('cli', 3);
    const before = Date.now();
    const review = JSON.parse(await sgmoe('review', '--db', file, '--frame', 'f-1', '--verdict', 'defect', '--kind', 'scratch', '--by', 'anna'));
    expect(review).toMatchObject({ frameId: 'f-1', verdict: 'defect', kind: 'scratch', reviewer: 'anna', via: 'cli' });
    expect(review.ts).toBeGreaterThanOrEqual(before);
    expect(review.bytes).toBe(join(frames, 'reviewed', `${sha256Hex(await png(1))}.png`));
    expect(existsSync(review.bytes)).toBe(true);

    // A correction is a new row; the latest stands, the history stays.
    await sgmoe('review', '--db', file, '--frame', 'f-1', '--verdict', 'good', '--by', 'ben');
    const db = openReviewDb(file);
    expect(standingReviews(db).map((r) => [r.frameId, r.verdict, r.kind, r.reviewer])).toEqual([['f-1', 'good', null, 'ben']]);
    expect(db.prepare('SELECT count(*) FROM reviews').pluck().get()).toBe(2);
    expect(latestVerdicts(db, [{ frameId: 'f-0' }, { frameId: 'f-1' }]).get(shownKey({ frameId: 'f-1' }))).toMatchObject({ verdict: 'good', reviewer: 'ben' });
    expect(latestVerdicts(db, [{ frameId: 'f-0' }, { frameId: 'f-1' }]).has(shownKey({ frameId: 'f-0' }))).toBe(false);
    db.close();
  });

  it('a verdict naming the bytes seen binds to their decision, not to a later frame that reused the id', async () => {
    const { file, frames } = await auditWithFrames('reused', 2);
    const [first, second] = [sha256Hex(await png(0)), sha256Hex(await png(1))];
    // The id f-0 comes back with png(1)'s bytes (a camera's counter reset), after the operator saw png(0).
    const { db: auditDb } = openAuditDb(file);
    const writer = new AuditWriter(auditDb);
    writer.record(decidedRecord(decision(5, 1), { frameId: 'f-0', source: 'dir:/in', inputSha256: second }, 1_700_000_001_000));
    writer.close();
    auditDb.close();

    const db = openReviewDb(file);
    const review = recordReview(db, { frameId: 'f-0', verdict: 'defect', reviewer: 'anna', inputSha256: first }, 'dashboard', { framesDir: frames });
    expect(review).toMatchObject({ inputSha256: first, decisionId: 1, bytes: join(frames, 'reviewed', `${first}.png`) });
    expect(latestVerdicts(db, [{ frameId: 'f-0', inputSha256: first }]).get(shownKey({ frameId: 'f-0', inputSha256: first }))).toMatchObject({ verdict: 'defect' });
    expect(latestVerdicts(db, [{ frameId: 'f-0', inputSha256: second }]).size).toBe(0);
    // f-1 shows the same bytes as the later f-0 and was never reviewed: it does not take another frame's verdict.
    expect(latestVerdicts(db, [{ frameId: 'f-0', inputSha256: first }, { frameId: 'f-1', inputSha256: first }]).has(shownKey({ frameId: 'f-1', inputSha256: first }))).toBe(false);
    expect(() => recordReview(db, { frameId: 'f-0', verdict: 'good', reviewer: 'anna', inputSha256: 'ab'.repeat(32) }, 'dashboard')).toThrow(
      expect.objectContaining({ code: 'E_REVIEW_FRAME', message: expect.stringContaining('the id may since name other bytes') }),
    );
    expect(() => recordReview(db, { frameId: 'f-0', verdict: 'good', reviewer: 'anna', inputSha256: 'not hex' }, 'dashboard')).toThrow(
      expect.objectContaining({ code: 'E_REVIEW_INVALID' }),
    );
    expect(db.prepare('SELECT count(*) FROM reviews').pluck().get()).toBe(1);
    db.close();
  });

  it('refuses an unknown verdict, a kind on a good verdict, a reserved kind and an unknown frame, recording nothing', async () => {
    const { file } = await auditWithFrames('bad', 1);
    await expect(sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'ok')).rejects.toMatchObject({ code: 'E_REVIEW_INVALID', message: expect.stringContaining('verdict') });
    await expect(sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'good', '--kind', 'x')).rejects.toMatchObject({ code: 'E_REVIEW_INVALID', message: expect.stringContaining('kind') });
    await expect(sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'defect', '--kind', 'masks')).rejects.toMatchObject({ code: 'E_REVIEW_INVALID' });
    await expect(sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'defect', '--kind', '../up')).rejects.toMatchObject({ code: 'E_REVIEW_INVALID' });
    await expect(sgmoe('review', '--db', file, '--frame', 'nope', '--verdict', 'good')).rejects.toMatchObject({ code: 'E_REVIEW_FRAME' });
    const db = openReviewDb(file);
    expect(db.prepare('SELECT count(*) FROM reviews').pluck().get()).toBe(0);
    db.close();
  });

  it('export --reviewed --as-dataset writes train/good, test/good (holdout) and test/<kind>, lists frames whose bytes are gone, refuses a non-empty folder', async () => {
    const { file, frames } = await auditWithFrames('export', 12);
    const db = openReviewDb(file);
    for (let i = 0; i < 10; i++) recordReview(db, { frameId: `f-${i}`, verdict: 'good', reviewer: 'anna' }, 'cli', { framesDir: frames });
    recordReview(db, { frameId: 'f-10', verdict: 'defect', kind: 'hole', reviewer: 'anna' }, 'cli', { framesDir: frames });
    // f-11's bytes are not kept (no framesDir given, and none pinned): a verdict the export cannot write.
    db.prepare(`UPDATE decisions SET input_sha256 = @sha WHERE frame_id = 'f-11'`).run({ sha: 'cd'.repeat(32) });
    recordReview(db, { frameId: 'f-11', verdict: 'defect', reviewer: 'anna' }, 'cli');
    db.close();

    const out = join(tmp, 'dataset');
    const result = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out, '--holdout', '0.6'));
    const count = (folder: string) => (existsSync(join(out, folder)) ? readdirSync(join(out, folder)).length : 0);
    expect(count('train/good') + count('test/good')).toBe(10);
    expect(count('test/good')).toBe(result.written['test/good']);
    expect(result.written['test/good']).toBe(6); // 0.6 of the 10 good frames, exactly
    expect(count('test/hole')).toBe(1);
    expect(result.missing).toEqual([{ frameId: 'f-11', decisionId: 12, verdict: 'defect', reason: 'not kept' }]);
    // Each file is the frame's own bytes, named after its audit row.
    const hole = readdirSync(join(out, 'test/hole'))[0];
    expect(hole).toMatch(/^11-[0-9a-f]{12}\.png$/);
    expect(readFileSync(join(out, 'test/hole', hole))).toEqual(await png(10));
    const manifest = JSON.parse(readFileSync(join(out, 'reviews.json'), 'utf8'));
    expect(manifest.files).toHaveLength(11);
    // The score maps pinned beside the reviewed frames are no training images.
    expect(readdirSync(join(frames, 'reviewed')).filter((f) => f.endsWith('.map.json'))).toHaveLength(11);
    expect(readdirSync(out, { recursive: true }).filter((f) => String(f).endsWith('.json'))).toEqual(['reviews.json']);

    // The same export again: the holdout split is the same (by sha256 order), and a non-empty folder is refused.
    await expect(sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out)).rejects.toMatchObject({ code: 'E_DATASET_OUT' });
    const again = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', join(tmp, 'dataset-2'), '--holdout', '0.6'));
    expect(again.written).toEqual(result.written);
    await expect(sgmoe('export', '--db', file, '--as-dataset', join(tmp, 'd3'))).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('--reviewed') });

    // Retention prunes the decisions; the verdicts (with their frames' sha256) and the kept bytes stay.
    const rw = openReviewDb(file);
    await new Retention(rw, { maxRows: 1 }).prune();
    expect(rw.prepare('SELECT count(*) FROM decisions').pluck().get()).toBe(1);
    rw.close();
    const pruned = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', join(tmp, 'dataset-3'), '--holdout', '0.6'));
    expect(pruned.written).toEqual(result.written);
  });
});

describe('a frame whose bytes the node did not keep', () => {
  it('review --file keeps the frame\'s own image for export, never another one', async () => {
    const { file, frames } = await auditWithFrames('file', 2);
    for (const name of readdirSync(frames)) rmSync(join(frames, name)); // kept nothing (keep: anomalous, a good frame)
    const image = join(tmp, 'file', 'f-0.png');
    writeFileSync(image, await png(0));
    const kept = JSON.parse(await sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'defect', '--kind', 'missed', '--file', image));
    expect(kept.bytes).toBe(join(frames, 'reviewed', `${sha256Hex(await png(0))}.png`));
    expect(readFileSync(kept.bytes)).toEqual(await png(0));
    // Another frame's file is not f-1's: the verdict stands, without pixels.
    const wrong = JSON.parse(await sgmoe('review', '--db', file, '--frame', 'f-1', '--verdict', 'good', '--file', image));
    expect(wrong.bytes).toBeNull();
    await expect(sgmoe('review', '--db', file, '--frame', 'f-1', '--verdict', 'good', '--file', join(tmp, 'nope.png'))).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE' });
    const db = openReviewDb(file);
    expect(db.prepare('SELECT count(*) FROM reviews').pluck().get()).toBe(2);
    db.close();
  });
});

describe('what an export writes', () => {
  it('a correction on a frame decided twice on the same bytes is exported once, as corrected; pinning via ./frames or frames/ keeps the sha256 name; damaged kept bytes are listed, not written', async () => {
    const { file, frames } = await auditWithFrames('twice', 3);
    const db = openReviewDb(file);
    recordReview(db, { frameId: 'f-0', verdict: 'defect', kind: 'scratch', reviewer: 'anna' }, 'cli');
    // The frame is decided again on the same bytes (a retake after a power cut), then corrected: on its latest decision.
    const audit = openAuditDb(file);
    const writer = new AuditWriter(audit.db);
    const sha = sha256Hex(await png(0));
    writer.record(decidedRecord(decision(0, 1), { frameId: 'f-0', source: 'dir:/in', inputSha256: sha }, 1_700_000_001_000));
    writer.close();
    audit.db.close();
    // The frames folder as typed, relative and not in normal form: the bytes still move under their own name.
    recordReview(db, { frameId: 'f-0', verdict: 'good', reviewer: 'ben' }, 'cli', { framesDir: `./${relative(process.cwd(), frames)}` });
    expect(standingReviews(db).map((r) => [r.frameId, r.decisionId, r.verdict, r.reviewer])).toEqual([['f-0', 4, 'good', 'ben']]);
    // With a trailing slash, as tab completion types it.
    const pinned = recordReview(db, { frameId: 'f-1', verdict: 'good', reviewer: 'ben' }, 'cli', { framesDir: `${frames}/` });
    expect(pinned.bytes).toBe(join(frames, 'reviewed', `${sha256Hex(await png(1))}.png`));
    expect(readdirSync(join(frames, 'reviewed')).sort()).toEqual([sha, sha256Hex(await png(1))].flatMap((h) => [`${h}.map.json`, `${h}.png`]).sort());
    // f-2's kept file is damaged (truncated by an older release on a full disk): not exported as a training image.
    recordReview(db, { frameId: 'f-2', verdict: 'defect', reviewer: 'ben' }, 'cli', { framesDir: frames });
    writeFileSync(join(frames, 'reviewed', `${sha256Hex(await png(2))}.png`), (await png(2)).subarray(0, 20));
    db.close();

    const out = join(tmp, 'twice-dataset');
    const result = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out));
    expect(result.written).toEqual({ 'train/good': 2 });
    expect(readdirSync(join(out, 'train/good')).map((n) => n.split('-')[0]).sort()).toEqual(['2', '4']);
    expect(result.missing).toEqual([{ frameId: 'f-2', decisionId: 3, verdict: 'defect', reason: 'kept bytes differ from the audit row' }]);
  });

  it('identical images under two frame ids judged good and defect are left out and listed, with a warning when judged (a defect never trains as good); a defect without a kind takes the named one', async () => {
    const { file } = await auditWithFrames('copies', 3);
    // f-0's and f-2's files came into the hot folder a second time, under other names.
    const audit = openAuditDb(file);
    const writer = new AuditWriter(audit.db);
    writer.record(decidedRecord(decision(0, 1), { frameId: 'f-0-again', source: 'dir:/in', inputSha256: sha256Hex(await png(0)) }, 1_700_000_001_000));
    writer.record(decidedRecord(decision(2, 1), { frameId: 'f-2-again', source: 'dir:/in', inputSha256: sha256Hex(await png(2)) }, 1_700_000_001_001));
    writer.close();
    audit.db.close();
    const warnings: string[] = [];
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((text) => warnings.push(String(text)) > 0);
    try {
      await sgmoe('review', '--db', file, '--frame', 'f-0-again', '--verdict', 'defect', '--kind', 'scratch', '--by', 'anna');
      await sgmoe('review', '--db', file, '--frame', 'f-0', '--verdict', 'good', '--by', 'ben');
      await sgmoe('review', '--db', file, '--frame', 'f-2', '--verdict', 'defect', '--by', 'ben');
      await sgmoe('review', '--db', file, '--frame', 'f-2-again', '--verdict', 'defect', '--kind', 'hole', '--by', 'anna');
      await sgmoe('review', '--db', file, '--frame', 'f-1', '--verdict', 'good', '--by', 'ben');
      expect(warnings.filter((w) => w.startsWith('the same image'))).toEqual(['the same image is f-0-again, judged scratch by anna: the export leaves both out until they agree\n']);

      const out = join(tmp, 'copies-dataset');
      const result = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out));
      expect(result.written).toEqual({ 'train/good': 1, 'test/hole': 1 });
      expect(result.conflicts).toEqual([
        {
          inputSha256: sha256Hex(await png(0)),
          reviews: [
            { frameId: 'f-0-again', decisionId: 4, verdict: 'defect', kind: 'scratch', reviewer: 'anna' },
            { frameId: 'f-0', decisionId: 1, verdict: 'good', kind: null, reviewer: 'ben' },
          ],
        },
      ]);
      expect(JSON.parse(readFileSync(join(out, 'reviews.json'), 'utf8')).conflicts).toEqual(result.conflicts);
      expect(warnings).toContain('not exported, identical images judged differently (review them again to agree): f-0-again: scratch by anna; f-0: good by ben\n');
    } finally {
      stderr.mockRestore();
    }
  });
});

describe('on a full disk (a real 1 MB tmpfs)', () => {
  onTmpfs('the frame store keeps no partial file and counts the failure; the export writes nothing, says so, and succeeds once there is room', async () => {
    if ('unavailable' in disk) return;
    const { file, frames } = await auditWithFrames('full', 2);
    const db = openReviewDb(file);
    recordReview(db, { frameId: 'f-0', verdict: 'good', reviewer: 'anna' }, 'cli', { framesDir: frames });
    recordReview(db, { frameId: 'f-1', verdict: 'defect', reviewer: 'anna' }, 'cli', { framesDir: frames });
    db.close();

    mkdirSync(join(disk.path, 'frames'));
    disk.fill();
    const store = new FrameStore({ dir: join(disk.path, 'frames'), keep: 'all', maxFiles: 10 });
    store.offer(await sharp(randomBytes(256 * 256), { raw: { width: 256, height: 256, channels: 1 } }).png().toBuffer(), true, mapOf(0));
    await store.flush();
    expect(store.counters).toMatchObject({ kept: 0, failed: 1 });
    expect(readdirSync(join(disk.path, 'frames'))).toEqual([]);

    const out = join(disk.path, 'dataset');
    await expect(sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out)).rejects.toMatchObject({ code: 'E_DATASET_WRITE', message: expect.stringContaining('nothing was written') });
    expect(readdirSync(disk.path).sort()).toEqual(['filler', 'frames']);
    disk.free();
    const result = JSON.parse(await sgmoe('export', '--db', file, '--reviewed', '--as-dataset', out));
    expect(result.written).toEqual({ 'train/good': 1, 'test/defect': 1 });
    expect(readdirSync(disk.path).sort()).toEqual(['dataset', 'frames']);
  });
});

describe('the free-space reserve (a real 1 MB tmpfs)', () => {
  /** Bytes free on the tmpfs, as the store reads them. */
  const free = async () => {
    if ('unavailable' in disk) return 0;
    const s = await fsp.statfs(disk.path);
    return s.bavail * s.bsize;
  };
  /** A PNG of 240x240 random gray pixels: about 58 KB, which no compression shrinks. */
  const noise = (i = 0) => sharp(randomBytes(240 * 240), { raw: { width: 240, height: 240, channels: 1 } }).png({ compressionLevel: i % 2 }).toBuffer();

  onTmpfs('below it the store evicts its oldest frames, keeps no new one while the disk stays short (the audit log growing), says so once each way, and keeps frames again once there is room', async () => {
    if ('unavailable' in disk) return;
    const dir = join(disk.path, 'reserve');
    const lines: Array<{ msg: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
    const minFreeBytes = (await free()) - 200 * 1024; // room for about three of these frames
    const store = new FrameStore({ dir, keep: 'all', maxFiles: 100, minFreeBytes, logger });
    for (let i = 0; i < 6; i++) {
      store.offer(await noise(i), true);
      await store.flush();
      expect(await free()).toBeGreaterThanOrEqual(minFreeBytes);
    }
    expect(store.counters).toMatchObject({ kept: 6, skipped: 0, failed: 0 });
    expect(store.counters.evicted).toBeGreaterThanOrEqual(3); // the oldest made way
    expect(readdirSync(dir).length).toBe(6 - store.counters.evicted);

    // The audit log takes more than the kept frames could give back: evicting them all would not make room for one
    // more, so they stay (reclaim, on a real disk fault, is what gives them up), and no new one is kept.
    const kept = readdirSync(dir);
    const keptBytes = kept.reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
    writeFileSync(join(disk.path, 'audit-growth'), Buffer.alloc((await free()) - minFreeBytes + keptBytes + 4096));
    const evicted = store.counters.evicted;
    store.offer(await noise(6), true);
    store.offer(await noise(7), true);
    await store.flush();
    expect(readdirSync(dir)).toEqual(kept);
    expect(store.counters).toMatchObject({ kept: 6, evicted, skipped: 2, failed: 0 });
    expect(lines.filter((l) => l.msg.startsWith('disk nearly full'))).toHaveLength(1);

    rmSync(join(disk.path, 'audit-growth'));
    store.offer(await noise(8), true);
    await store.flush();
    expect(store.counters).toMatchObject({ kept: 7, skipped: 2 });
    expect(lines.filter((l) => l.msg.startsWith('room on the disk again'))).toHaveLength(1);
    rmSync(dir, { recursive: true });
  });

  onTmpfs('frames offered together are kept one after another, each within the reserve; when the audit log fills the disk, reclaim gives it their room', async () => {
    if ('unavailable' in disk) return;
    const dir = join(disk.path, 'reclaim');
    const minFreeBytes = (await free()) - 200 * 1024;
    const store = new FrameStore({ dir, keep: 'all', maxFiles: 100, minFreeBytes });
    for (const bytes of await Promise.all([0, 1, 2, 3, 4, 5].map((i) => noise(i)))) store.offer(bytes, true); // a burst
    await store.flush();
    expect(await free()).toBeGreaterThanOrEqual(minFreeBytes);
    expect(store.counters).toMatchObject({ kept: 6, failed: 0 });
    expect(readdirSync(dir).length).toBeGreaterThan(0);

    // The line's own files take the disk (no frame offered meanwhile): the node's disk fault calls reclaim.
    writeFileSync(join(disk.path, 'wal-growth'), Buffer.alloc((await free()) - 4096));
    await store.reclaim();
    expect(readdirSync(dir)).toEqual([]);
    expect(store.counters.evicted).toBe(6);
    rmSync(join(disk.path, 'wal-growth'));
    rmSync(dir, { recursive: true });
  });

  onTmpfs('without a reserve too, reclaim on a full disk gives up every kept frame but the one a review pinned, and the line\'s write goes through', async () => {
    if ('unavailable' in disk) return;
    const dir = join(disk.path, 'no-reserve');
    const store = new FrameStore({ dir, keep: 'all', maxFiles: 100, minFreeBytes: 0 });
    const frames = await Promise.all([0, 1, 2, 3].map((i) => noise(i)));
    for (const bytes of frames) store.offer(bytes, true);
    await store.flush();
    expect(store.counters).toMatchObject({ kept: 4, failed: 0 });
    const pinned = pinFrame(dir, sha256Hex(frames[1]));

    // The line's own files take the disk: its next write (a commit's 100 KB) fails until the node's disk fault calls reclaim.
    disk.fill();
    const lineWrite = () => writeFileSync(join(disk.path, 'wal-growth'), Buffer.alloc(100 * 1024));
    expect(lineWrite).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    await store.reclaim();
    expect(readdirSync(dir)).toEqual(['reviewed']);
    expect(existsSync(pinned!)).toBe(true);
    expect(store.counters.evicted).toBe(3);
    lineWrite();
    disk.free();
    rmSync(join(disk.path, 'wal-growth'));
    rmSync(dir, { recursive: true });
  });
});

describe('frame store', () => {
  it('keeps at most maxFiles and maxBytes, evicting the oldest (also what an earlier run kept); a pinned (reviewed) frame survives eviction; anomalous-only keeps no good frame', async () => {
    const dir = join(tmp, 'store');
    const store = new FrameStore({ dir, keep: 'all', maxFiles: 3 });
    const bytes = await Promise.all([0, 1, 2, 3, 4].map(png));
    for (const b of bytes.slice(0, 3)) {
      store.offer(b, false);
      await store.flush();
    }
    // Reviewed: moved out of the bounded folder.
    expect(pinFrame(dir, sha256Hex(bytes[0]))).toContain('reviewed');
    for (const b of bytes.slice(3)) {
      store.offer(b, false);
      await store.flush();
    }
    const kept = readdirSync(dir).filter((f) => f.endsWith('.png'));
    expect(kept.sort()).toEqual([2, 3, 4].map((i) => `${sha256Hex(bytes[i])}.png`).sort());
    expect(readdirSync(join(dir, 'reviewed'))).toEqual([`${sha256Hex(bytes[0])}.png`]);

    // A byte bound too: room for the second and third frames (the first is no larger), so the first goes.
    expect(bytes[0].length).toBeLessThanOrEqual(bytes[2].length);
    const sized = new FrameStore({ dir: join(tmp, 'store-bytes'), keep: 'all', maxFiles: 100, maxBytes: bytes[1].length + bytes[2].length });
    for (const b of bytes.slice(0, 3)) {
      sized.offer(b, false);
      await sized.flush();
    }
    expect(readdirSync(join(tmp, 'store-bytes')).sort()).toEqual([1, 2].map((i) => `${sha256Hex(bytes[i])}.png`).sort());
    // A new store over the same folder counts what is there against its bounds.
    const reopened = new FrameStore({ dir: join(tmp, 'store-bytes'), keep: 'all', maxFiles: 2 });
    reopened.offer(bytes[3], false);
    await reopened.flush();
    expect(readdirSync(join(tmp, 'store-bytes'))).toHaveLength(2);
    expect(readdirSync(join(tmp, 'store-bytes'))).toContain(`${sha256Hex(bytes[3])}.png`);

    const anomalousOnly = new FrameStore({ dir: join(tmp, 'store-2'), keep: 'anomalous', maxFiles: 3 });
    anomalousOnly.offer(bytes[0], false);
    anomalousOnly.offer(bytes[1], true);
    anomalousOnly.offer(Buffer.from('not an image'), true);
    await anomalousOnly.flush();
    expect(readdirSync(join(tmp, 'store-2'))).toEqual([`${sha256Hex(bytes[1])}.png`]);
  });
});

describe('score maps kept with anomalous frames', () => {
  it('are kept beside their frame and read back (a cell that was no number still none), never taken for a frame, pinned and evicted with it, and counted in the bounds', async () => {
    const dir = join(tmp, 'maps');
    const store = new FrameStore({ dir, keep: 'anomalous', maxFiles: 2 });
    const bytes = await Promise.all([0, 1, 2, 3, 4].map(png));
    const sha = bytes.map(sha256Hex);
    const keptAs = (...i: number[]) => i.flatMap((k) => [`${sha[k]}.map.json`, `${sha[k]}.png`]);
    for (const i of [0, 1]) {
      store.offer(bytes[i], true, mapOf(i));
      await store.flush();
    }
    expect(readdirSync(dir).sort()).toEqual(keptAs(0, 1).sort());
    expect(readScoreMap(dir, sha[0])).toEqual(mapOf(0));
    expect(locateFrame(dir, sha[0])).toBe(join(dir, `${sha[0]}.png`));

    // A review pins the map with its frame; the oldest of the others go with theirs.
    pinFrame(dir, sha[0]);
    expect(readdirSync(join(dir, 'reviewed')).sort()).toEqual(keptAs(0).sort());
    expect(readScoreMap(dir, sha[0])).toEqual(mapOf(0));
    for (const i of [2, 3]) {
      store.offer(bytes[i], true, mapOf(i));
      await store.flush();
    }
    expect(readdirSync(dir).sort()).toEqual([...keptAs(2, 3), 'reviewed'].sort());
    expect(readScoreMap(dir, sha[1])).toBeNull();
    expect(store.counters).toMatchObject({ kept: 4, evicted: 1 });

    // A restarted store evicts what an earlier run kept with its map.
    const reopened = new FrameStore({ dir, keep: 'all', maxFiles: 1 });
    reopened.offer(bytes[4], false);
    await reopened.flush();
    expect(readdirSync(dir).sort()).toEqual([`${sha[4]}.png`, 'reviewed'].sort());

    // Maps count against maxBytes: room for two frames without their maps keeps one with its map.
    const sizedDir = join(tmp, 'maps-bytes');
    const sized = new FrameStore({ dir: sizedDir, keep: 'anomalous', maxFiles: 100, maxBytes: bytes[0].length + bytes[1].length });
    for (const i of [0, 1]) {
      sized.offer(bytes[i], true, mapOf(i));
      await sized.flush();
    }
    expect(readdirSync(sizedDir).sort()).toEqual(keptAs(1).sort());
  });

  it('a frame whose map cannot be written is still kept, without it (no heatmap after a restart; nothing half-written)', async () => {
    const dir = join(tmp, 'maps-unwritable');
    const sha = sha256Hex(await png(0));
    // A folder where the map would go: its rename fails.
    mkdirSync(join(dir, `${sha}.map.json`), { recursive: true });
    const store = new FrameStore({ dir, keep: 'anomalous', maxFiles: 2 });
    store.offer(await png(0), true, mapOf(0));
    await store.flush();
    expect(store.counters).toMatchObject({ kept: 1, failed: 0 });
    expect(readdirSync(dir).sort()).toEqual([`${sha}.map.json`, `${sha}.png`]);
    expect(readScoreMap(dir, sha)).toBeNull();
  });

  /** Runs `body` with `fs/promises`' `name` calling `before(path args)` first, as a review landing at that instant would. */
  async function withHook(name: 'rename' | 'unlink', before: (...paths: string[]) => void, body: () => Promise<void>) {
    const real = fsp[name] as (...args: string[]) => Promise<void>;
    (fsp as unknown as Record<string, unknown>)[name] = (...paths: string[]) => (before(...paths), real(...paths));
    try {
      await body();
    } finally {
      (fsp as unknown as Record<string, unknown>)[name] = real;
    }
  }

  it('a review racing the write or the eviction never parts a frame from its map, and a restart sweeps what a kill left', async () => {
    const bytes = await Promise.all([0, 1, 2].map(png));
    const sha = bytes.map(sha256Hex);
    // A review lands just before the frame does (its map already there): it finds nothing; both land together.
    const during = join(tmp, 'race-write');
    const store = new FrameStore({ dir: during, keep: 'anomalous', maxFiles: 1 });
    const pins: (string | null)[] = [];
    await withHook('rename', (_from, to) => void (to.endsWith('.png') && pins.push(pinFrame(during, sha[0]))), async () => {
      store.offer(bytes[0], true, mapOf(0));
      await store.flush();
    });
    expect(pins).toEqual([null]);
    expect(readdirSync(during).sort()).toEqual([`${sha[0]}.map.json`, `${sha[0]}.png`]);
    // A review of the oldest frame lands as eviction removes it: the review takes frame and map, eviction nothing.
    await withHook('unlink', (path) => void (path.endsWith(`${sha[0]}.png`) && pinFrame(during, sha[0])), async () => {
      store.offer(bytes[1], true, mapOf(1));
      await store.flush();
    });
    expect(readdirSync(join(during, 'reviewed')).sort()).toEqual([`${sha[0]}.map.json`, `${sha[0]}.png`]);
    expect(readdirSync(during).sort()).toEqual([`${sha[1]}.map.json`, `${sha[1]}.png`, 'reviewed']);
    expect(store.counters).toMatchObject({ kept: 2, evicted: 0 });

    // A kill after a map landed but before its frame, or mid-write: the next start removes the leftovers.
    writeFileSync(join(during, `${sha[2]}.map.json`), JSON.stringify(mapOf(2)));
    writeFileSync(join(during, `.${sha[2]}.png.part`), bytes[2].subarray(0, 10));
    new FrameStore({ dir: during, keep: 'anomalous', maxFiles: 1 });
    expect(readdirSync(during).sort()).toEqual([`${sha[1]}.map.json`, `${sha[1]}.png`, 'reviewed']);
  });

  it('a damaged or foreign map file reads as none', async () => {
    const dir = join(tmp, 'maps-damaged');
    mkdirSync(dir);
    const sha = sha256Hex(await png(0));
    writeFileSync(join(dir, `${sha}.map.json`), '{"grid":[2,2],"map":[1,2');
    expect(readScoreMap(dir, sha)).toBeNull();
    writeFileSync(join(dir, `${sha}.map.json`), JSON.stringify({ grid: [2, 2], map: [1, 2, 3] }));
    expect(readScoreMap(dir, sha)).toBeNull();
    expect(readScoreMap(dir, 'ab'.repeat(32))).toBeNull();
  });
});
