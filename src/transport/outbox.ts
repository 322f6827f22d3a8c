import Database from 'better-sqlite3';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { openOutboxFile, type OutboxRecovery } from './outbox-file';

/**
 * Results and health are droppable: when the outbox is full the oldest of them go first. Alarms are
 * never dropped (they are rare and an operator must see them). Status is not queued at all: it is a
 * state, and the birth message on every connect carries the latest one.
 */
export type OutboxKind = 'result' | 'health' | 'alarm' | 'anomaly';
const DROPPABLE: Record<OutboxKind, boolean> = { result: true, health: true, alarm: false, anomaly: false };

export interface OutboxMessage {
  kind: OutboxKind;
  topic: string;
  payload: string;
  qos: 0 | 1;
}

export interface OutboxEntry extends OutboxMessage {
  seq: number;
  enqueuedAt: number;
}

/** queued = sent + dropped + pending, across restarts (the counters live in the same database). */
export interface OutboxStats {
  pending: number;
  queued: number;
  sent: number;
  dropped: number;
}

export interface OutboxOptions {
  /** Droppable messages kept at most; beyond it the oldest are dropped and counted. */
  maxResults: number;
  logger?: Logger;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sgmoe_outbox (
  -- AUTOINCREMENT: sequence numbers never go back, even when the table empties, so "after seq" cursors stay valid.
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL,
  qos INTEGER NOT NULL,
  droppable INTEGER NOT NULL,
  enqueued_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sgmoe_outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO sgmoe_outbox_counters (name, value) VALUES ('queued', 0), ('sent', 0), ('dropped', 0);
`;

type Counter = 'queued' | 'sent' | 'dropped';

interface Row {
  seq: number;
  kind: OutboxKind;
  topic: string;
  payload: string;
  qos: 0 | 1;
  enqueued_at: number;
}

/**
 * The persistent outbox: every message is written here before it is sent and deleted only when the
 * broker acknowledged it, so a broker outage or a restart loses nothing. Its own tables, in a database
 * it opens (`Outbox.open`) or one it is given (e.g. the audit log's).
 */
export class Outbox {
  private readonly log: Logger;
  private readonly stmt: {
    insert: Database.Statement;
    oldestDroppable: Database.Statement;
    remove: Database.Statement;
    removeAll: Database.Statement;
    next: Database.Statement;
    bump: Database.Statement;
    touch: Database.Statement;
  };
  private readonly enqueueTx: (messages: readonly OutboxMessage[]) => number[];
  private readonly ackTx: (seqs: readonly number[]) => void;
  private counts!: OutboxStats;
  private droppablePending = 0;
  private ownsDb = false;
  /**
   * synchronous=full on a file of its own: the connection commits at NORMAL (no fsync) and `enqueueAll` ends with
   * one FULL commit, whose fsync of the write-ahead log carries every frame written before it to disk.
   */
  private fsyncPerCommit = false;
  private closed = false;
  /** Set when the file was unreadable at open and a fresh one was started (how many results may be lost). */
  recovered: OutboxRecovery | null = null;

  /**
   * Opens (or creates) its own SQLite file in WAL mode; `close()` closes the file too. A corrupt file is moved
   * aside for a fresh one, and `recovered` says so.
   */
  static open(path: string, options: OutboxOptions & { synchronous?: 'full' | 'normal' }): Outbox {
    const synchronous = options.synchronous ?? 'full';
    const file = openOutboxFile(path, options.logger ?? silentLogger);
    const outbox = new Outbox(file.db, options);
    outbox.ownsDb = true;
    outbox.fsyncPerCommit = synchronous === 'full';
    outbox.recovered = file.recovered;
    return outbox;
  }

  /** Uses a database someone else owns (and closes); its pragmas are left as they are. */
  constructor(private readonly db: Database.Database, private readonly options: OutboxOptions) {
    this.log = (options.logger ?? silentLogger).child({ module: 'outbox' });
    db.exec(SCHEMA);
    this.stmt = {
      insert: db.prepare(
        'INSERT INTO sgmoe_outbox (kind, topic, payload, qos, droppable, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      oldestDroppable: db.prepare('SELECT seq FROM sgmoe_outbox WHERE droppable = 1 ORDER BY seq LIMIT 1').pluck(),
      remove: db.prepare('DELETE FROM sgmoe_outbox WHERE seq = ? RETURNING droppable').pluck(),
      removeAll: db.prepare('DELETE FROM sgmoe_outbox WHERE seq IN (SELECT value FROM json_each(@seqs)) RETURNING droppable').pluck(),
      next: db.prepare('SELECT seq, kind, topic, payload, qos, enqueued_at FROM sgmoe_outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
      bump: db.prepare('UPDATE sgmoe_outbox_counters SET value = value + ? WHERE name = ?'),
      // A one-row write whose FULL commit fsyncs the log, and with it the rows committed before it.
      touch: db.prepare("UPDATE sgmoe_outbox_counters SET value = value WHERE name = 'queued'"),
    };
    this.enqueueTx = db.transaction((messages: readonly OutboxMessage[]): number[] => {
      const seqs = messages.map((message) => {
        const droppable = DROPPABLE[message.kind];
        const { lastInsertRowid } = this.stmt.insert.run(message.kind, message.topic, message.payload, message.qos, droppable ? 1 : 0, Date.now());
        this.counts.pending++;
        if (droppable) this.droppablePending++;
        return Number(lastInsertRowid);
      });
      this.bump('queued', messages.length);
      while (this.droppablePending > this.options.maxResults) this.dropOldest();
      return seqs;
    });
    this.ackTx = db.transaction((seqs: readonly number[]) => {
      const removed = this.stmt.removeAll.all({ seqs: JSON.stringify(seqs) }) as number[];
      for (const droppable of removed) if (droppable === 1) this.droppablePending--;
      this.counts.pending -= removed.length;
      this.bump('sent', removed.length);
    });
    this.loadCounts();
  }

  private loadCounts(): void {
    const stored = Object.fromEntries(
      this.db.prepare('SELECT name, value FROM sgmoe_outbox_counters').raw().all() as [Counter, number][],
    ) as Record<Counter, number>;
    this.counts = {
      pending: this.db.prepare('SELECT COUNT(*) FROM sgmoe_outbox').pluck().get() as number,
      queued: stored.queued,
      sent: stored.sent,
      dropped: stored.dropped,
    };
    this.droppablePending = this.db.prepare('SELECT COUNT(*) FROM sgmoe_outbox WHERE droppable = 1').pluck().get() as number;
  }

  /** Stores a message durably and returns its sequence number. */
  enqueue(message: OutboxMessage): number {
    return this.enqueueAll([message])[0];
  }

  /**
   * Stores messages in one transaction and returns their sequence numbers once they are on disk (one fsync for
   * all). `beforeSync` runs between the commit and the fsync: the transport sends them then, so delivery does not
   * wait for the disk; whoever settles a frame still waits for this call, and so for the fsync.
   */
  enqueueAll(messages: readonly OutboxMessage[], beforeSync?: (seqs: number[]) => void): number[] {
    this.assertOpen();
    const what = (): string => `${messages.length} ${[...new Set(messages.map((m) => m.kind))].join('/')} message(s)`;
    let seqs: number[];
    try {
      seqs = this.enqueueTx(messages);
    } catch (err) {
      this.loadCounts(); // the transaction rolled back: so did the counts it had bumped
      throw new SgmoeError('E_OUTBOX_WRITE', `could not store ${what()} in the outbox: ${errorMessage(err)}`, undefined, { cause: err });
    }
    beforeSync?.(seqs);
    if (this.fsyncPerCommit) {
      try {
        this.sync();
      } catch (err) {
        // Stored but perhaps not on disk: a caller that retries stores them again (a duplicate, never a loss).
        throw new SgmoeError('E_OUTBOX_WRITE', `could not make ${what()} durable in the outbox: ${errorMessage(err)}`, undefined, { cause: err });
      }
    }
    return seqs;
  }

  private sync(): void {
    this.db.pragma('synchronous = FULL');
    try {
      this.stmt.touch.run();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  private dropOldest(): void {
    const seq = this.stmt.oldestDroppable.get() as number;
    this.stmt.remove.get(seq);
    this.droppablePending--;
    this.counts.pending--;
    this.bump('dropped', 1);
    // One line per thousand drops: enough to see it happen without flooding the log during an outage.
    if (this.counts.dropped % 1000 === 1) {
      this.log.warn({ seq, dropped: this.counts.dropped, maxResults: this.options.maxResults }, 'outbox full: dropping the oldest results');
    }
  }

  /** Up to `limit` messages with a sequence number above `afterSeq`, oldest first. */
  next(afterSeq: number, limit: number): OutboxEntry[] {
    this.assertOpen();
    return (this.stmt.next.all(afterSeq, limit) as Row[]).map((r) => ({
      seq: r.seq,
      kind: r.kind,
      topic: r.topic,
      payload: r.payload,
      qos: r.qos,
      enqueuedAt: r.enqueued_at,
    }));
  }

  /** The broker has these: delete them (one DELETE). Unknown sequence numbers (already dropped) are ignored. */
  ack(seqs: readonly number[]): void {
    this.assertOpen();
    try {
      // An acknowledgement needs no fsync of its own (the connection commits at NORMAL): lost in a power cut it
      // costs a duplicate, never a loss, and the next enqueue's fsync carries it to disk.
      this.ackTx(seqs);
    } catch (err) {
      this.loadCounts();
      throw new SgmoeError('E_OUTBOX_WRITE', `could not remove ${seqs.length} acknowledged messages from the outbox: ${errorMessage(err)}`, undefined, { cause: err });
    }
  }

  stats(): OutboxStats {
    return { ...this.counts };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsDb) this.db.close();
  }

  private bump(name: Counter, by: number): void {
    if (by === 0) return;
    this.stmt.bump.run(by, name);
    this.counts[name] += by;
  }

  private assertOpen(): void {
    if (this.closed) throw new SgmoeError('E_OUTBOX_CLOSED', 'the outbox is closed: expected an open outbox, found one already closed');
  }
}
