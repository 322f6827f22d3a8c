import type { Database, Statement } from 'better-sqlite3';
import { errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { sqliteCode } from './sqlite-code';

export interface RetentionPolicy {
  /** Decisions and events older than this go (ms). */
  maxAgeMs?: number;
  /** Decisions beyond the newest maxRows go. */
  maxRows?: number;
  /** Pages in use (decisions, events, indexes) are kept under this many bytes; the oldest decisions go. */
  maxBytes?: number;
  /** Rows deleted per transaction: small, so a pass never holds the writer up for long. */
  batchRows?: number;
}

export interface RetentionOptions {
  logger?: Logger;
  now?: () => number;
}

/**
 * Prunes the audit log to its bounds, oldest rows first, `batchRows` per transaction, yielding to the
 * event loop between transactions so the batched writer keeps its pace.
 */
export class Retention {
  private readonly policy: Required<Pick<RetentionPolicy, 'batchRows'>> & RetentionPolicy;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly deleteOlder: Statement;
  private readonly deleteEventsOlder: Statement;
  private readonly deleteUpTo: Statement;
  private readonly deleteOldest: Statement;
  private readonly maxId: Statement;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running?: Promise<number>;

  constructor(
    private readonly db: Database,
    policy: RetentionPolicy,
    options: RetentionOptions = {},
  ) {
    this.policy = { batchRows: 2000, ...policy };
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.deleteOlder = db.prepare('DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE ts < ? ORDER BY ts LIMIT ?)');
    this.deleteEventsOlder = db.prepare('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ? ORDER BY ts LIMIT ?)');
    this.deleteUpTo = db.prepare('DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE id <= ? ORDER BY id LIMIT ?)');
    this.deleteOldest = db.prepare('DELETE FROM decisions WHERE id IN (SELECT id FROM decisions ORDER BY id LIMIT ?)');
    this.maxId = db.prepare('SELECT max(id) FROM decisions').pluck();
  }

  /** Bytes of the pages in use (the file less its free pages). */
  usedBytes(): number {
    const pages = (this.db.pragma('page_count', { simple: true }) as number) - (this.db.pragma('freelist_count', { simple: true }) as number);
    return pages * (this.db.pragma('page_size', { simple: true }) as number);
  }

  /** One transaction of at most batchRows deletions per rule that is over its bound; returns rows deleted. */
  step(): number {
    const { maxAgeMs, maxRows, maxBytes, batchRows } = this.policy;
    return this.db.transaction(() => {
      let deleted = 0;
      if (maxAgeMs !== undefined) {
        const cutoff = this.now() - maxAgeMs;
        deleted += this.deleteOlder.run(cutoff, batchRows).changes;
        deleted += this.deleteEventsOlder.run(cutoff, batchRows).changes;
      }
      if (maxRows !== undefined) {
        // Ids only grow (AUTOINCREMENT), so keeping ids above max - maxRows keeps at most maxRows rows.
        const top = (this.maxId.get() as number | null) ?? 0;
        deleted += this.deleteUpTo.run(top - maxRows, batchRows).changes;
      }
      if (maxBytes !== undefined && this.usedBytes() > maxBytes) {
        deleted += this.deleteOldest.run(batchRows).changes;
      }
      // Hand the freed pages back to the file system (auto_vacuum = INCREMENTAL).
      if (deleted > 0) this.db.pragma('incremental_vacuum');
      return deleted;
    })();
  }

  /** Steps until every bound holds, yielding between steps. Returns the rows deleted. */
  prune(): Promise<number> {
    // One pass at a time: a timer tick during a long pass joins it.
    if (!this.running) {
      this.stopped = false;
      this.running = this.loop().finally(() => (this.running = undefined));
    }
    return this.running;
  }

  /** Prunes now and then every intervalMs. */
  start(intervalMs = 60_000): void {
    this.stop();
    void this.prune();
    this.timer = setInterval(() => void this.prune(), intervalMs).unref();
  }

  /** Stops the timer and ends a pass in progress after its current step (call before closing the db). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async loop(): Promise<number> {
    let total = 0;
    for (;;) {
      let deleted: number;
      try {
        deleted = this.step();
      } catch (err) {
        this.logger.error({ code: sqliteCode(err), err: errorMessage(err) }, 'audit retention step failed; retrying at the next pass');
        return total;
      }
      total += deleted;
      if (deleted === 0 || this.stopped) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (total > 0) this.logger.info({ deleted: total }, 'audit retention pruned');
    return total;
  }
}
