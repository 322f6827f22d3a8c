import type { Database } from 'better-sqlite3';
import { SgmoeError } from '../errors';

/**
 * Schema migrations, one per `PRAGMA user_version` step. A migration runs in its own transaction together
 * with the version bump, so a crash mid-migration leaves the previous version intact. Append new steps;
 * never edit a released one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: decisions and events.
  `
  CREATE TABLE decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, so ids order rows even after pruning
    ts              INTEGER NOT NULL,                  -- ms since epoch when the outcome was known
    received_at     INTEGER,                           -- ms since epoch when the frame entered
    frame_id        TEXT NOT NULL,
    source          TEXT,
    input_sha256    TEXT,
    model_name      TEXT,
    model_version   TEXT,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'rejected', 'dropped')),
    label           TEXT,
    label_index     INTEGER,
    score           REAL,
    expert          INTEGER,                           -- null on an early exit or when no decision was made
    early_exit      INTEGER,
    base_confidence REAL,
    gate            BLOB,                              -- gate probabilities as little-endian float32
    macs            INTEGER,
    trunk_us        INTEGER,
    base_us         INTEGER,
    gate_us         INTEGER,
    expert_us       INTEGER,
    total_us        INTEGER,
    error_code      TEXT,
    error_message   TEXT
  );
  -- Time windows are the common filter; other filters scan the window. One index keeps inserts cheap.
  CREATE INDEX decisions_ts ON decisions (ts);
  CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    ts            INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    model_name    TEXT,
    model_version TEXT,
    message       TEXT NOT NULL,
    details       TEXT                                 -- JSON
  );
  CREATE INDEX events_ts ON events (ts);
  `,
  // 2: operators' verdicts on frames (the anomaly feedback loop). A correction is a new row: the latest counts,
  // the history stays for the audit.
  `
  CREATE TABLE reviews (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ts           INTEGER NOT NULL,                     -- ms since epoch of the verdict
    frame_id     TEXT NOT NULL,
    decision_id  INTEGER NOT NULL,                     -- the decisions row judged (frame ids may repeat)
    input_sha256 TEXT,                                 -- copied from it: retention may prune the row, not the verdict
    verdict      TEXT NOT NULL CHECK (verdict IN ('good', 'defect')),
    kind         TEXT,                                 -- the defect kind, a folder name in an exported data set
    reviewer     TEXT NOT NULL,
    via          TEXT NOT NULL                         -- cli | dashboard
  );
  CREATE INDEX reviews_decision ON reviews (decision_id);
  `,
  // 3: where a signal window lies in its signal (null for images): its first sample's offset and time, its tags.
  `
  ALTER TABLE decisions ADD COLUMN window_offset INTEGER;
  ALTER TABLE decisions ADD COLUMN window_start  INTEGER;  -- ms since epoch of its first sample (streams)
  ALTER TABLE decisions ADD COLUMN rpm           REAL;
  ALTER TABLE decisions ADD COLUMN load          REAL;
  `,
  // 4: the threshold an anomaly package's verdict was taken at (null for other tasks): it moves with
  // set-false-alarm-rate, so the score alone does not say why a frame was flagged.
  `
  ALTER TABLE decisions ADD COLUMN threshold REAL;
  `,
  // 5: from which row on a replaying source's (a hot folder's) row follows its queued result (src/node/settle.ts):
  // only those rows let a hot folder move a file a kill left behind without deciding it again. An older release
  // wrote the row first, so its rows do not say the result was queued.
  `
  CREATE TABLE results_first (after_id INTEGER NOT NULL);
  INSERT INTO results_first SELECT coalesce(max(id), 0) FROM decisions;
  `,
  // 6: a hot folder asks at its start, file by file, for the latest outcome of each file left in its inbox; a look at
  // the latest rows alone missed a file held as cut short while the folder decided others.
  `
  CREATE INDEX IF NOT EXISTS decisions_frame ON decisions (frame_id);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database up to SCHEMA_VERSION; refuses a file written by a newer release. */
export function migrate(db: Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new SgmoeError(
      'E_AUDIT_SCHEMA',
      `audit database ${db.name} has schema version ${current}, this release knows up to ${SCHEMA_VERSION}`,
      { found: current, expected: SCHEMA_VERSION },
    );
  }
  for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version - 1]);
      db.pragma(`user_version = ${version}`);
    })();
  }
}
