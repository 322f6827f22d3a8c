import Database, { type Database as Db } from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';
import { validate } from '../validate';
import { pinFrame } from './frame-store';
import { migrate } from './schema';
import { sqliteCode } from './sqlite-code';
import { limitWal } from './wal';

/** An operator's verdict on one decided frame: the anomaly feedback loop's input. */
export const REVIEW_VERDICTS = ['good', 'defect'] as const;
export type ReviewVerdict = (typeof REVIEW_VERDICTS)[number];
export const REVIEW_VIA = ['cli', 'dashboard'] as const;

/** A defect kind becomes a folder of the exported data set: a plain name, never `good` or `masks`. */
const kindSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'a folder name of lower-case letters, digits, - and _ (at most 40)')
  .refine((k) => k !== 'good' && k !== 'masks', 'not "good" or "masks" (folders the factory reserves)');

export const reviewInputSchema = z
  .object({
    frameId: z.string().min(1).max(512),
    verdict: z.enum(REVIEW_VERDICTS),
    kind: kindSchema.optional(),
    reviewer: z.string().min(1).max(100),
    /** The bytes the reviewer saw: the verdict then binds to a decision on them, not to whatever reused the frame id since. */
    inputSha256: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in lower-case hex').optional(),
  })
  .strict()
  .refine((r) => r.kind === undefined || r.verdict === 'defect', { message: 'a kind goes with verdict defect only', path: ['kind'] });

export type ReviewInput = z.output<typeof reviewInputSchema>;

export interface Review {
  id: number;
  ts: number;
  frameId: string;
  decisionId: number;
  /** The frame's sha256, as its decision row had it: how the export finds the kept bytes. */
  inputSha256: string | null;
  verdict: ReviewVerdict;
  /** The defect kind (`defect` when none was given); null for good. */
  kind: string | null;
  reviewer: string;
  via: (typeof REVIEW_VIA)[number];
}

export interface RecordedReview extends Review {
  /** Where the frame's bytes are kept for export, or null when the node did not keep them (or they were evicted). */
  bytes: string | null;
}

/** The defect kind of a verdict without one. */
export const DEFAULT_DEFECT_KIND = 'defect';

/**
 * Opens an existing audit database to record reviews, beside the node's own connection (WAL lets both write):
 * never creates a database, and brings an older one up to this release's schema.
 */
export function openReviewDb(file: string, busyTimeoutMs = 5000): Db {
  if (!existsSync(file)) throw new SgmoeError('E_AUDIT_NOT_FOUND', `expected an audit database at ${file}, found no such file`, { file });
  let db: Db | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: busyTimeoutMs });
    limitWal(db);
    migrate(db);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof SgmoeError) throw err;
    throw new SgmoeError('E_AUDIT_UNWRITABLE', `expected a writable audit database at ${file}, but: ${sqliteCode(err) ?? ''} ${errorMessage(err)}`.trim(), { file }, { cause: err });
  }
}

/**
 * Records a verdict on the latest decision of `frameId` (on the bytes `inputSha256` names, when given) and, when `framesDir` is given, moves the frame's kept bytes
 * out of eviction's reach. `input` is validated here, so the CLI and the dashboard refuse the same things.
 */
export function recordReview(db: Db, input: unknown, via: Review['via'], options: { framesDir?: string; now?: number } = {}): RecordedReview {
  const r = validate(reviewInputSchema, input, { code: 'E_REVIEW_INVALID', where: 'the review' });
  const decision = db
    .prepare(
      `SELECT id, input_sha256 AS sha FROM decisions WHERE frame_id = @frameId AND status = 'ok'
       AND (@sha IS NULL OR input_sha256 = @sha) ORDER BY id DESC LIMIT 1`,
    )
    .get({ frameId: r.frameId, sha: r.inputSha256 ?? null }) as { id: number; sha: string | null } | undefined;
  if (!decision) {
    const seen = r.inputSha256 ? ` on bytes with sha256 ${r.inputSha256} (the id may since name other bytes)` : '';
    throw new SgmoeError('E_REVIEW_FRAME', `expected a decided frame ${JSON.stringify(r.frameId)}${seen} in the audit log, found none`, {
      frameId: r.frameId,
      ...(r.inputSha256 && { inputSha256: r.inputSha256 }),
    });
  }
  const review = {
    ts: options.now ?? Date.now(),
    frameId: r.frameId,
    decisionId: decision.id,
    inputSha256: decision.sha,
    verdict: r.verdict,
    kind: r.verdict === 'defect' ? (r.kind ?? DEFAULT_DEFECT_KIND) : null,
    reviewer: r.reviewer,
    via,
  };
  const { lastInsertRowid } = db
    .prepare(
      `INSERT INTO reviews (ts, frame_id, decision_id, input_sha256, verdict, kind, reviewer, via)
       VALUES (@ts, @frameId, @decisionId, @inputSha256, @verdict, @kind, @reviewer, @via)`,
    )
    .run(review);
  const bytes = options.framesDir && decision.sha ? pinFrame(options.framesDir, decision.sha) : null;
  return { id: Number(lastInsertRowid), ...review, bytes };
}

interface ReviewColumns {
  id: number;
  ts: number;
  frame_id: string;
  decision_id: number;
  input_sha256: string | null;
  verdict: ReviewVerdict;
  kind: string | null;
  reviewer: string;
  via: Review['via'];
}

const fromReviewColumns = (c: ReviewColumns): Review => ({
  id: c.id,
  ts: c.ts,
  frameId: c.frame_id,
  decisionId: c.decision_id,
  inputSha256: c.input_sha256,
  verdict: c.verdict,
  kind: c.kind,
  reviewer: c.reviewer,
  via: c.via,
});

/**
 * The standing verdicts, oldest first; kept when retention prunes the decisions. The latest review of a frame on the
 * same bytes (sha256) stands, as the dashboard shows it: a frame decided twice and corrected counts once, with the
 * correction. Two frames of identical bytes keep their own verdicts (the export checks that they agree). Reviews
 * without a sha256 stand per decision.
 */
export function standingReviews(db: Db): Review[] {
  const rows = db
    .prepare(
      `SELECT * FROM reviews WHERE id IN
         (SELECT max(id) FROM reviews GROUP BY frame_id, coalesce(input_sha256, 'decision ' || decision_id)) ORDER BY id`,
    )
    .all() as ReviewColumns[];
  return rows.map(fromReviewColumns);
}

/**
 * Whether two verdicts on the same image disagree: good against defect, or two named kinds (a defect without a kind,
 * `defect`, agrees with any). The export leaves an image out while its verdicts disagree.
 */
export function disagree(a: Review, b: Review): boolean {
  const named = (kind: string | null) => kind !== null && kind !== DEFAULT_DEFECT_KIND;
  return a.verdict !== b.verdict || (named(a.kind) && named(b.kind) && a.kind !== b.kind);
}

/** The standing verdicts of other frames with the same bytes that this review disagrees with. */
export function contradicted(db: Db, review: Review): Review[] {
  if (!review.inputSha256) return [];
  const rows = db
    .prepare(
      `SELECT * FROM reviews WHERE id IN (SELECT max(id) FROM reviews WHERE input_sha256 = @sha GROUP BY frame_id) AND frame_id != @frameId ORDER BY id`,
    )
    .all({ sha: review.inputSha256, frameId: review.frameId }) as ReviewColumns[];
  return rows.map(fromReviewColumns).filter((r) => disagree(r, review));
}

/** A frame as a dashboard row shows it: its id and, when known, the sha256 of the bytes it showed. */
export interface ShownFrame {
  frameId: string;
  inputSha256?: string;
}

/** The key of a shown frame in `latestVerdicts`: its id and, when known, its bytes (two frames of identical bytes keep their own verdicts). */
export const shownKey = (f: ShownFrame): string => `${f.frameId} ${f.inputSha256 ?? ''}`;

/**
 * The latest verdict on each of these frames, for the dashboard's rows: on the bytes shown when known (a reused frame
 * id does not carry another image's verdict), else on any decision of the frame id. Keyed by `shownKey`.
 */
export function latestVerdicts(db: Db, frames: readonly ShownFrame[]): Map<string, Review> {
  const out = new Map<string, Review>();
  const stmt = db.prepare(
    `SELECT * FROM reviews WHERE frame_id = @frameId AND (@sha IS NULL OR input_sha256 = @sha) ORDER BY id DESC LIMIT 1`,
  );
  for (const frame of frames) {
    const key = shownKey(frame);
    if (out.has(key)) continue;
    const row = stmt.get({ frameId: frame.frameId, sha: frame.inputSha256 ?? null }) as ReviewColumns | undefined;
    if (row) out.set(key, fromReviewColumns(row));
  }
  return out;
}
