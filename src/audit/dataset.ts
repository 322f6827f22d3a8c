import type { Database } from 'better-sqlite3';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { SgmoeError } from '../errors';
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
  /** Reviewed frames whose bytes the node no longer keeps (or never kept): listed, not silently lost. */
  missing: Array<{ frameId: string; decisionId: number; verdict: string }>;
}

/** A stable draw in [0, 1) from a frame's sha256, so the same frame always lands in the same split. */
const draw = (sha256: string) => parseInt(sha256.slice(0, 8), 16) / 2 ** 32;

/**
 * Writes the standing verdicts as the anomaly factory's data folder (scripts/factory/anomaly/images.py):
 * frames judged good in train/good/ (a `holdout` share in test/good/), defects in test/<kind>/. File names are
 * `<decision id>-<sha256 prefix>.<format>`, traceable to the audit row; `reviews.json` lists every file's
 * review. Refuses a non-empty folder, so an export never mixes with or overwrites another.
 */
export function exportReviewedDataset(db: Database, framesDir: string, dir: string, options: DatasetExportOptions = {}): DatasetExport {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new SgmoeError('E_DATASET_OUT', `expected an empty or new folder to write the data set in, found ${dir} not empty`, { dir });
  }
  const holdout = options.holdout ?? 0;
  const written: Record<string, number> = {};
  const missing: DatasetExport['missing'] = [];
  const files: Array<Record<string, unknown>> = [];
  for (const review of standingReviews(db)) {
    const source = review.inputSha256 ? locateFrame(framesDir, review.inputSha256) : null;
    if (!source || !review.inputSha256) {
      missing.push({ frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict });
      continue;
    }
    const folder = review.verdict === 'good' ? (draw(review.inputSha256) < holdout ? 'test/good' : 'train/good') : `test/${review.kind}`;
    const name = `${review.decisionId}-${review.inputSha256.slice(0, 12)}${extname(source)}`;
    mkdirSync(join(dir, folder), { recursive: true });
    copyFileSync(source, join(dir, folder, name));
    written[folder] = (written[folder] ?? 0) + 1;
    files.push({ file: `${folder}/${name}`, frameId: review.frameId, decisionId: review.decisionId, verdict: review.verdict, kind: review.kind, reviewer: review.reviewer, reviewedAt: new Date(review.ts).toISOString() });
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'reviews.json'), `${JSON.stringify({ files, missing }, null, 2)}\n`);
  return { dir, written, missing };
}
