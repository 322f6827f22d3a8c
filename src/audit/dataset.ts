import type { Database } from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { SgmoeError, errorMessage } from '../errors';
import { sha256Hex } from '../model/integrity';
import { locateFrame } from './frame-store';
import { DEFAULT_DEFECT_KIND, disagree, standingReviews, type Review } from './review';

export interface DatasetExportOptions {
  /** Share of good frames put in test/good/ instead of train/good/: round(share x good frames), those first by sha256. Default 0. */
  holdout?: number;
}

export interface DatasetExport {
  dir: string;
  /** Files written per folder of the data set, e.g. { 'train/good': 42, 'test/scratch': 3 }. */
  written: Record<string, number>;
  /** Reviewed frames whose bytes the node no longer keeps (or never kept, or kept damaged): listed, not silently lost. */
  missing: Array<{ frameId: string; decisionId: number; verdict: string; reason: 'not kept' | 'kept bytes differ from the audit row' }>;
  /** Identical bytes judged differently under several frame ids (good and defect, or two kinds): left out, each listed. */
  conflicts: Array<{ inputSha256: string; reviews: Array<{ frameId: string; decisionId: number; verdict: string; kind: string | null; reviewer: string }> }>;
}

/**
 * The good images held out for test/good/: the requested share of them, exactly (a draw per image gave 2 of 10 for
 * 0.6), taken in sha256 order so the same verdicts always give the same split.
 */
function heldOut(goodShas: string[], share: number): Set<string> {
  return new Set([...goodShas].sort().slice(0, Math.round(share * goodShas.length)));
}

/**
 * One verdict per image from the standing reviews of its bytes, or null when two of them disagree. The latest stands
 * for it, with the named kind when one of them gave it.
 */
function agreed(reviews: Review[]): Review | null {
  if (reviews.some((r, i) => reviews.slice(i + 1).some((o) => disagree(r, o)))) return null;
  const latest = reviews[reviews.length - 1];
  return { ...latest, kind: reviews.find((r) => r.kind !== DEFAULT_DEFECT_KIND)?.kind ?? latest.kind };
}

/** The standing reviews grouped by the bytes they judge (per decision when without a sha256), oldest first. */
function byImage(reviews: Review[]): Review[][] {
  const groups = new Map<string, Review[]>();
  for (const r of reviews) {
    const key = r.inputSha256 ?? `decision ${r.decisionId}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(r);
  }
  return [...groups.values()];
}

/**
 * Writes the standing verdicts as the anomaly factory's data folder (scripts/factory/anomaly/images.py):
 * frames judged good in train/good/ (a `holdout` share in test/good/), defects in test/<kind>/. File names are
 * `<decision id>-<sha256 prefix>.<format>`, traceable to the audit row; `reviews.json` lists every file's
 * review. Only bytes whose sha256 is the audit row's are written; identical bytes judged differently under two frame
 * ids are left out (a defect must never train as good) and listed under `conflicts`. The folder appears whole or not
 * at all (built beside it, then renamed), so a full disk never leaves a partial data set the factory would train on. Refuses a
 * non-empty folder, so an export never mixes with or overwrites another.
 */
export function exportReviewedDataset(db: Database, framesDir: string, dir: string, options: DatasetExportOptions = {}): DatasetExport {
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new SgmoeError('E_DATASET_OUT', `expected an empty or new folder to write the data set in, found ${dir} ${statSync(dir).isDirectory() ? 'not empty' : 'a file'}`, { dir });
  }
  const holdout = options.holdout ?? 0;
  const written: Record<string, number> = {};
  const missing: DatasetExport['missing'] = [];
  const conflicts: DatasetExport['conflicts'] = [];
  const files: Array<Record<string, unknown>> = [];
  const parent = dirname(resolve(dir));
  let staging: string | undefined;
  try {
    mkdirSync(parent, { recursive: true });
    staging = mkdtempSync(join(parent, `.${basename(dir)}-`));
    const exported: Array<{ review: Review; sha: string; source: string; bytes: Buffer }> = [];
    for (const image of byImage(standingReviews(db))) {
      const review = agreed(image);
      if (!review) {
        const reviews = image.map(({ frameId, decisionId, verdict, kind, reviewer }) => ({ frameId, decisionId, verdict, kind, reviewer }));
        conflicts.push({ inputSha256: image[0].inputSha256!, reviews });
        continue;
      }
      const sha = review.inputSha256;
      const source = sha ? locateFrame(framesDir, sha) : null;
      const bytes = source ? readFileSync(source) : null;
      if (!sha || !source || !bytes || sha256Hex(bytes) !== sha) {
        const reason = source ? 'kept bytes differ from the audit row' : 'not kept';
        missing.push({ frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict, reason });
        continue;
      }
      exported.push({ review, sha, source, bytes });
    }
    const test = heldOut(exported.filter((e) => e.review.verdict === 'good').map((e) => e.sha), holdout);
    for (const { review, sha, source, bytes } of exported) {
      const folder = review.verdict === 'good' ? (test.has(sha) ? 'test/good' : 'train/good') : `test/${review.kind}`;
      const name = `${review.decisionId}-${sha.slice(0, 12)}${extname(source)}`;
      mkdirSync(join(staging, folder), { recursive: true });
      writeFileSync(join(staging, folder, name), bytes);
      written[folder] = (written[folder] ?? 0) + 1;
      files.push({ file: `${folder}/${name}`, frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict, kind: review.kind, reviewer: review.reviewer, reviewedAt: new Date(review.ts).toISOString() });
    }
    writeFileSync(join(staging, 'reviews.json'), `${JSON.stringify({ files, missing, conflicts }, null, 2)}\n`);
    renameSync(staging, dir); // over an empty folder too
  } catch (err) {
    if (staging) rmSync(staging, { recursive: true, force: true });
    throw new SgmoeError('E_DATASET_WRITE', `could not write the data set in ${dir}, so nothing was written: ${errorMessage(err)}`, { dir }, { cause: err });
  }
  return { dir, written, missing, conflicts };
}
