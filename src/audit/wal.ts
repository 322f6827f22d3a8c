import type { Database as Db } from 'better-sqlite3';

/** The size a write-ahead log is cut back to after a checkpoint. */
export const WAL_LIMIT_BYTES = 1024 * 1024;

/**
 * Keeps a writing connection's write-ahead log small on the data disk, where the audit log and the outbox keep one
 * each. At SQLite's defaults it grows to about 4 MB (a checkpoint every 1,000 pages) and never shrinks. A checkpoint
 * every 200 pages (800 KiB) keeps a node's small commits under 1 MiB; the limit cuts the file back to 1 MiB at the
 * first commit after a checkpoint, once something bigger grew it (a large transaction, a long read holding
 * checkpoints back). Both are per connection: every connection that writes sets them.
 */
export function limitWal(db: Db): void {
  db.pragma('wal_autocheckpoint = 200');
  db.pragma(`journal_size_limit = ${WAL_LIMIT_BYTES}`);
}
