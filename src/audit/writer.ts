import type { Database, Statement } from 'better-sqlite3';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import type { AuditRecord } from './record';
import { INSERT_DECISION, INSERT_DECISIONS, ROWS_PER_INSERT, toParams, valuesOf } from './rows';
import { sqliteCode } from './sqlite-code';

export interface AuditWriterOptions {
  /** Write as soon as this many records wait. */
  batchRows?: number;
  /** ...or when the oldest waiting record is this old (ms). */
  flushIntervalMs?: number;
  /** Records held in memory at most; beyond it `record()` refuses and counts (it never blocks). */
  maxBuffered?: number;
  logger?: Logger;
  /** Called after each committed batch with the ids it was given (the kill -9 test relies on it). */
  onCommit?: (batch: CommittedBatch) => void;
}

export interface CommittedBatch {
  rows: number;
  firstId: number;
  lastId: number;
}

/** accepted = written + failed + buffered; `overflow` were refused and never accepted. */
export interface AuditWriterCounters {
  accepted: number;
  written: number;
  /** Accepted records whose batch could not be committed (disk full, I/O error): not audited. */
  failed: number;
  /** Records refused because the buffer was full: not audited. */
  overflow: number;
  buffered: number;
  batches: number;
}

/**
 * Batched writer of the decisions table. `record()` only pushes to an array, so the inference loop never
 * waits for the disk; a batch is written in one transaction once `batchRows` records wait (on the next
 * turn of the event loop) or every `flushIntervalMs`. A batch that fails to commit is counted and logged,
 * never thrown: the node keeps deciding.
 */
export class AuditWriter {
  private buffer: AuditRecord[] = [];
  private readonly insert: Statement;
  private readonly insertMany: Statement;
  private readonly writeBatch: (batch: AuditRecord[]) => CommittedBatch;
  private readonly batchRows: number;
  private readonly maxBuffered: number;
  private readonly logger: Logger;
  private readonly onCommit?: (batch: CommittedBatch) => void;
  private readonly timer: NodeJS.Timeout;
  private flushScheduled = false;
  private closed = false;
  private readonly counts = { accepted: 0, written: 0, failed: 0, overflow: 0, batches: 0 };

  constructor(db: Database, options: AuditWriterOptions = {}) {
    this.batchRows = options.batchRows ?? 1000;
    this.maxBuffered = options.maxBuffered ?? 100_000;
    this.logger = options.logger ?? silentLogger;
    this.onCommit = options.onCommit;
    this.insert = db.prepare(INSERT_DECISION);
    this.insertMany = db.prepare(INSERT_DECISIONS);
    this.writeBatch = db.transaction((batch: AuditRecord[]) => {
      let lastId = 0;
      let i = 0;
      for (; i + ROWS_PER_INSERT <= batch.length; i += ROWS_PER_INSERT) {
        lastId = Number(this.insertMany.run(valuesOf(batch, i, ROWS_PER_INSERT)).lastInsertRowid);
      }
      for (; i < batch.length; i++) lastId = Number(this.insert.run(toParams(batch[i])).lastInsertRowid);
      // Ids are consecutive: one writer, one transaction, rows inserted in order.
      return { rows: batch.length, firstId: lastId - batch.length + 1, lastId };
    });
    // unref: a pending flush must not keep a finished process alive; close() flushes what is left.
    this.timer = setInterval(() => this.flush(), options.flushIntervalMs ?? 250).unref();
  }

  /** Hands a record over without waiting. Returns false when it was refused (buffer full or closed). */
  record(r: AuditRecord): boolean {
    if (this.closed || this.buffer.length >= this.maxBuffered) {
      this.counts.overflow++;
      return false;
    }
    this.buffer.push(r);
    this.counts.accepted++;
    if (this.buffer.length >= this.batchRows && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return true;
  }

  /** Writes everything waiting, `batchRows` per transaction. Returns the number of rows committed. */
  flush(): number {
    const pending = this.buffer;
    this.buffer = [];
    let committed = 0;
    for (let i = 0; i < pending.length; i += this.batchRows) {
      committed += this.commit(pending.length <= this.batchRows ? pending : pending.slice(i, i + this.batchRows));
    }
    return committed;
  }

  /**
   * Writes what waits, then `records` in one transaction, now: for a caller that must know its rows are on disk
   * before it goes on (the node settles a frame only then). Throws E_AUDIT_WRITE when they could not be
   * committed; they are then neither written nor counted as failed, since the caller keeps and retries them.
   */
  commitNow(records: readonly AuditRecord[]): void {
    this.flush();
    if (records.length === 0) return;
    if (this.closed) throw new SgmoeError('E_AUDIT_WRITE', `expected an open audit log to commit ${records.length} row(s) to, found it closed`);
    let done: CommittedBatch;
    try {
      done = this.writeBatch([...records]);
    } catch (err) {
      throw new SgmoeError('E_AUDIT_WRITE', `could not commit ${records.length} audit row(s): ${errorMessage(err)}`, { sqlite: sqliteCode(err) }, { cause: err });
    }
    this.counts.accepted += done.rows;
    this.counts.written += done.rows;
    this.counts.batches++;
    this.onCommit?.(done);
  }

  /** Flushes and stops the timer; later records are refused and counted as overflow. */
  close(): void {
    this.flush();
    clearInterval(this.timer);
    this.closed = true;
  }

  get counters(): AuditWriterCounters {
    return { ...this.counts, buffered: this.buffer.length };
  }

  private commit(batch: AuditRecord[]): number {
    let done: CommittedBatch;
    try {
      done = this.writeBatch(batch);
    } catch (err) {
      this.counts.failed += batch.length;
      this.logger.error(
        { code: sqliteCode(err), err: errorMessage(err), rows: batch.length, failed: this.counts.failed },
        'audit batch not written; the node goes on deciding',
      );
      return 0;
    }
    this.counts.written += done.rows;
    this.counts.batches++;
    this.onCommit?.(done);
    return done.rows;
  }
}
