import Database from 'better-sqlite3';
import { existsSync, renameSync } from 'node:fs';
import { sqliteCode } from '../audit/sqlite-code';
import { limitWal } from '../audit/wal';
import { SgmoeError, errorMessage } from '../errors';
import type { Logger } from '../log';

/** What `openOutboxFile` found when the file was unreadable and moved aside. */
export interface OutboxRecovery {
  movedTo: string;
  code: string;
  reason: string;
  /** Results still queued in the unreadable file, as far as it could be counted; null when not at all. */
  resultsMayBeLost: number | null;
}

export interface OutboxFile {
  db: Database.Database;
  recovered: OutboxRecovery | null;
}

const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB']);

/**
 * Opens (or creates) the outbox's own SQLite file in WAL mode, committing at NORMAL. A corrupt or truncated file is renamed
 * `<file>.corrupt-<timestamp>` (with its -wal/-shm) and a fresh one started, as the audit log does: the node
 * keeps sending what it decides from now on, and says how many queued results the old file may have held.
 */
export function openOutboxFile(path: string, logger: Logger, now: () => number = Date.now): OutboxFile {
  try {
    return { db: openChecked(path), recovered: null };
  } catch (err) {
    const code = sqliteCode(err);
    if (code === undefined || !CORRUPT.has(code)) throw openError(path, err);
    const resultsMayBeLost = countQueuedResults(path);
    const movedTo = `${path}.corrupt-${new Date(now()).toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(path + suffix)) renameSync(path + suffix, movedTo + suffix);
    }
    const recovered = { movedTo, code, reason: errorMessage(err), resultsMayBeLost };
    logger.error(recovered, `outbox database corrupt; moved aside, starting a fresh one: ${lostText(resultsMayBeLost)}`);
    try {
      return { db: openChecked(path), recovered };
    } catch (again) {
      throw openError(path, again);
    }
  }
}

/** "12 queued results may be lost", or "an unknown number of ..." when the file could not be counted. */
export function lostText(results: number | null): string {
  return `${results === null ? 'an unknown number of' : results} queued result(s) may be lost`;
}

function openChecked(path: string): Database.Database {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL'); // the outbox makes its own fsync per enqueue when its durability is full
    limitWal(db);
    // Reads every page once: a damaged file is found now, not at the first send after an outage.
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw Object.assign(new Error(`quick_check: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Best effort on a damaged file: its queued results if the table can still be read, else what its counters
 * say was pending (an upper bound: health reports and alarms included), else null.
 */
function countQueuedResults(path: string): number | null {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return null;
  }
  const count = (sql: string): number | null => {
    try {
      return db.prepare(sql).pluck().get() as number;
    } catch {
      return null;
    }
  };
  try {
    return (
      count("SELECT COALESCE(SUM(count), 0) FROM sgmoe_outbox WHERE kind = 'result'") ??
      count("SELECT count(*) FROM sgmoe_outbox WHERE kind = 'result'") ?? // a file from before rows held several
      count("SELECT sum(CASE name WHEN 'queued' THEN value ELSE -value END) FROM sgmoe_outbox_counters")
    );
  } finally {
    db.close();
  }
}

function openError(path: string, err: unknown): SgmoeError {
  return new SgmoeError('E_OUTBOX_OPEN', `could not open the outbox database ${path}: ${errorMessage(err)}`, { path }, { cause: err });
}
