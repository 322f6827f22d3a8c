import Database, { type Database as Db } from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { EventLog } from './events';
import { migrate, SCHEMA_VERSION } from './schema';
import { sqliteCode } from './sqlite-code';
import { limitWal } from './wal';

export interface OpenAuditDbOptions {
  logger?: Logger;
  /** How long to wait for another connection's lock before giving up (ms). */
  busyTimeoutMs?: number;
  now?: () => number;
}

/** What `openAuditDb` found when the file was unreadable and moved aside. */
export interface AuditRecovery {
  movedTo: string;
  code: string;
  reason: string;
  /** When it was moved aside, ms since epoch. */
  at: number;
}

export interface OpenedAuditDb {
  db: Db;
  /** Set when the file was unreadable and was moved aside for a fresh one. */
  recovered: AuditRecovery | null;
}

const CORRUPT = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB']);
const LOCKED = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);

/**
 * Opens (or creates) the audit database, ready to write.
 *
 * A corrupt file is renamed `<file>.corrupt-<timestamp>` (with its -wal/-shm) and a fresh database is
 * started with a `db_recovered` event, so the node keeps auditing and the old file stays for forensics (the node
 * also raises an E_AUDIT_RECOVERED alarm on MQTT).
 * A path that cannot be written or a database locked by another process gives E_AUDIT_UNWRITABLE /
 * E_AUDIT_LOCKED.
 */
export function openAuditDb(file: string, options: OpenAuditDbOptions = {}): OpenedAuditDb {
  const logger = options.logger ?? silentLogger;
  const now = options.now ?? Date.now;
  try {
    return { db: openChecked(file, options), recovered: null };
  } catch (err) {
    const code = sqliteCode(err);
    if (code === undefined || !CORRUPT.has(code)) throw classify(file, err);
    const at = now();
    const movedTo = `${file}.corrupt-${new Date(at).toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
    }
    const reason = errorMessage(err);
    logger.error({ file, movedTo, code, reason }, 'audit database corrupt; moved aside, starting a fresh one');
    let db: Db;
    try {
      db = openChecked(file, options);
    } catch (again) {
      throw classify(file, again);
    }
    new EventLog(db, { logger, now }).write({
      kind: 'db_recovered',
      message: `audit database was unreadable (${code}: ${reason}); moved to ${movedTo} and started afresh`,
      details: { movedTo, code, reason },
    });
    return { db, recovered: { movedTo, code, reason, at } };
  }
}

function openChecked(file: string, options: OpenAuditDbOptions): Db {
  mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file, { timeout: options.busyTimeoutMs ?? 2000 });
  try {
    // Lets retention hand freed pages back to the file system. Only takes effect on a new, empty file,
    // and only before journal_mode is set; on an existing file it changes nothing.
    db.pragma('auto_vacuum = INCREMENTAL');
    // WAL: readers (the CLI, the dashboard) never block the writer, and a commit is one sequential append.
    db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode: a commit is in the OS as soon as it returns, so it survives the process being
    // killed (kill -9, a crash); it is fsynced at checkpoints, so a power cut can lose the last commits
    // since the last checkpoint, but never corrupts the file. FULL would fsync every batch.
    db.pragma('synchronous = NORMAL');
    limitWal(db);
    // Reads every page once: a damaged file is found now, not halfway through a shift.
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') {
      throw Object.assign(new Error(`quick_check: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
    }
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function classify(file: string, err: unknown): unknown {
  if (err instanceof SgmoeError) return err;
  const code = sqliteCode(err);
  const found = errorMessage(err);
  if (code !== undefined && LOCKED.has(code)) {
    return new SgmoeError('E_AUDIT_LOCKED', `expected to lock audit database ${file}, but another process holds it (${code}: ${found})`, { file, code }, { cause: err });
  }
  return new SgmoeError('E_AUDIT_UNWRITABLE', `expected a writable audit database at ${file}, but: ${code ? `${code}: ` : ''}${found}`, { file, code }, { cause: err });
}

/** Opens an existing audit database for reading only (the CLI, a dashboard): never creates, never migrates. */
export function openAuditDbReadOnly(file: string): Db {
  if (!existsSync(file)) {
    throw new SgmoeError('E_AUDIT_NOT_FOUND', `expected an audit database at ${file}, found no such file`, { file });
  }
  let db: Db | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION) {
      throw new SgmoeError('E_AUDIT_SCHEMA', `expected an audit database of schema version ${SCHEMA_VERSION} at ${file}, found version ${version}`, {
        file,
        found: version,
      });
    }
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof SgmoeError) throw err;
    throw new SgmoeError('E_AUDIT_UNREADABLE', `expected a readable audit database at ${file}, but: ${sqliteCode(err) ?? ''} ${errorMessage(err)}`.trim(), { file }, { cause: err });
  }
}
