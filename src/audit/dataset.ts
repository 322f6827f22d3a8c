import type { Database } from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { SgmoeError, errorMessage } from '../errors';
import { sha256Hex } from '../model/integrity';
import { locateFrame } from './frame-store';
import { standingReviews } from './review';

export interface DatasetExportOptions {
  /** Share of good frames put in test/good/ instead of train/good/ (chosen by their sha256, so stable). Default 0. */
  holdout?: number;
}

export interface DatasetExport {
  dir: string;
  /** Files written per folder of the data set, e.g. { 'train/good': 42, 'test/scratch': 3 }. */
  written: Record<string, number>;
  /** Reviewed frames whose bytes the node no longer keeps (or never kept, or kept damaged): listed, not silently lost. */
  missing: Array<{ frameId: string; decisionId: number; verdict: string; reason: 'not kept' | 'kept bytes differ from the audit row' }>;
}

/** A stable draw in [0, 1) from a frame's sha256, so the same frame always lands in the same split. */
const draw = (sha256: string) => parseInt(sha256.slice(0, 8), 16) / 2 ** 32;

/**
 * Writes the standing verdicts as the anomaly factory's data folder (scripts/factory/anomaly/images.py):
 * frames judged good in train/good/ (a `holdout` share in test/good/), defects in test/<kind>/. File names are
 * `<decision id>-<sha256 prefix>.<format>`, traceable to the audit row; `reviews.json` lists every file's
 * review. Only bytes whose sha256 is the audit row's are written. The folder appears whole or not at all (built
 * beside it, then renamed), so a full disk never leaves a partial data set the factory would train on. Refuses a
 * non-empty folder, so an export never mixes with or overwrites another.
 */
export function exportReviewedDataset(db: Database, framesDir: string, dir: string, options: DatasetExportOptions = {}): DatasetExport {
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new SgmoeError('E_DATASET_OUT', `expected an empty or new folder to write the data set in, found ${dir} ${statSync(dir).isDirectory() ? 'not empty' : 'a file'}`, { dir });
  }
  const holdout = options.holdout ?? 0;
  const written: Record<string, number> = {};
  const missing: DatasetExport['missing'] = [];
  const files: Array<Record<string, unknown>> = [];
  const parent = dirname(resolve(dir));
  let staging: string | undefined;
  try {
    mkdirSync(parent, { recursive: true });
    staging = mkdtempSync(join(parent, `.${basename(dir)}-`));
    for (const review of standingReviews(db)) {
      const sha = review.inputSha256;
      const source = sha ? locateFrame(framesDir, sha) : null;
      const bytes = source ? readFileSync(source) : null;
      if (!sha || !source || !bytes || sha256Hex(bytes) !== sha) {
        const reason = source ? 'kept bytes differ from the audit row' : 'not kept';
        missing.push({ frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict, reason });
        continue;
      }
      const folder = review.verdict === 'good' ? (draw(sha) < holdout ? 'test/good' : 'train/good') : `test/${review.kind}`;
      const name = `${review.decisionId}-${sha.slice(0, 12)}${extname(source)}`;
      mkdirSync(join(staging, folder), { recursive: true });
      writeFileSync(join(staging, folder, name), bytes);
      written[folder] = (written[folder] ?? 0) + 1;
      files.push({ file: `${folder}/${name}`, frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict, kind: review.kind, reviewer: review.reviewer, reviewedAt: new Date(review.ts).toISOString() });
    }
    writeFileSync(join(staging, 'reviews.json'), `${JSON.stringify({ files, missing }, null, 2)}\n`);
    renameSync(staging, dir); // over an empty folder too
  } catch (err) {
    if (staging) rmSync(staging, { recursive: true, force: true });
    throw new SgmoeError('E_DATASET_WRITE', `could not write the data set in ${dir}, so nothing was written: ${errorMessage(err)}`, { dir }, { cause: err });
  }
  return { dir, written, missing };
}
