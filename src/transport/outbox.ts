import Database from 'better-sqlite3';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { openOutboxFile, type OutboxRecovery } from './outbox-file';

/**
 * Results, rejections and health reports are droppable, under one bound (`maxResults`): when the outbox is full the
 * oldest of them go first, whatever their kind. A result and a rejection are each a frame's one outcome, so the bound
 * is on frames waiting (with the few health reports), and a burst of bad frames takes no more room than good ones
 * would. Alarms and anomaly messages are never dropped (they are rare and an operator must see them). Status is not
 * queued at all: it is a state, and the birth message on every connect carries the latest one.
 */
export type OutboxKind = 'result' | 'health' | 'alarm' | 'anomaly' | 'rejected';
const DROPPABLE: Record<OutboxKind, boolean> = { result: true, health: true, alarm: false, anomaly: false, rejected: true };

export interface OutboxMessage {
  kind: OutboxKind;
  topic: string;
  payload: string;
  qos: 0 | 1;
}

/**
 * One stored row: the messages of one kind, topic and QoS that one `enqueueAll` call stored together (one engine
 * batch's results, say). A row is acknowledged, dropped and sent again as a whole, so the outbox writes one row and
 * deletes one row per batch rather than per message; after a reconnect a partly acknowledged row goes out again in
 * full (at-least-once: a duplicate, never a loss).
 */
export interface OutboxEntry extends Omit<OutboxMessage, 'payload'> {
  seq: number;
  payloads: string[];
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
  /** Results, rejections and health reports kept at most, together; beyond it the oldest are dropped and counted. */
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
  enqueued_at INTEGER NOT NULL,
  -- messages in the row: 1 keeps the payload as it is, more are joined by newlines
  count INTEGER NOT NULL DEFAULT 1
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
  count: number;
}

/**
 * A row of several messages joins them with newlines: JSON text as JSON.stringify writes it holds none, and joining
 * costs a twentieth of a JSON array's escaping. A payload with a newline gets a row of its own, stored as it is.
 */
const SEPARATOR = '\n';
const encode = (payloads: readonly string[]): string => payloads.join(SEPARATOR);
const decode = (row: Row): string[] => (row.count === 1 ? [row.payload] : row.payload.split(SEPARATOR));

/** The messages of one call, one entry per kind, topic and QoS, in order of first appearance. */
function groupsOf(messages: readonly OutboxMessage[], enqueuedAt: number): Omit<OutboxEntry, 'seq'>[] {
  const groups = new Map<string, Omit<OutboxEntry, 'seq'>>();
  const alone: Omit<OutboxEntry, 'seq'>[] = [];
  for (const { kind, topic, qos, payload } of messages) {
    if (payload.includes(SEPARATOR)) {
      alone.push({ kind, topic, qos, payloads: [payload], enqueuedAt });
      continue;
    }
    const key = `${kind}\n${qos}\n${topic}`;
    const group = groups.get(key);
    if (group) group.payloads.push(payload);
    else groups.set(key, { kind, topic, qos, payloads: [payload], enqueuedAt });
  }
  return [...groups.values(), ...alone];
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
  private readonly enqueueTx: (groups: readonly Omit<OutboxEntry, 'seq'>[]) => OutboxEntry[];
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
    this.migrate();
    this.stmt = {
      insert: db.prepare(
        'INSERT INTO sgmoe_outbox (kind, topic, payload, qos, droppable, enqueued_at, count) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      oldestDroppable: db.prepare('SELECT seq FROM sgmoe_outbox WHERE droppable = 1 ORDER BY seq LIMIT 1').pluck(),
      remove: db.prepare('DELETE FROM sgmoe_outbox WHERE seq = ? RETURNING count').pluck(),
      removeAll: db.prepare('DELETE FROM sgmoe_outbox WHERE seq IN (SELECT value FROM json_each(@seqs)) RETURNING droppable, count').raw(),
      next: db.prepare('SELECT seq, kind, topic, payload, qos, enqueued_at, count FROM sgmoe_outbox WHERE seq > ? ORDER BY seq'),
      bump: db.prepare('UPDATE sgmoe_outbox_counters SET value = value + ? WHERE name = ?'),
      // A one-row write whose FULL commit fsyncs the log, and with it the rows committed before it.
      touch: db.prepare("UPDATE sgmoe_outbox_counters SET value = value WHERE name = 'queued'"),
    };
    this.enqueueTx = db.transaction((groups: readonly Omit<OutboxEntry, 'seq'>[]): OutboxEntry[] => {
      let messages = 0;
      const entries = groups.map((group) => {
        const count = group.payloads.length;
        const droppable = DROPPABLE[group.kind];
        const { lastInsertRowid } = this.stmt.insert.run(group.kind, group.topic, encode(group.payloads), group.qos, droppable ? 1 : 0, group.enqueuedAt, count);
        messages += count;
        if (droppable) this.droppablePending += count;
        return { ...group, seq: Number(lastInsertRowid) };
      });
      this.counts.pending += messages;
      this.bump('queued', messages);
      while (this.droppablePending > this.options.maxResults) this.dropOldest();
      return entries;
    });
    this.ackTx = db.transaction((seqs: readonly number[]) => {
      let sent = 0;
      for (const [droppable, count] of this.stmt.removeAll.all({ seqs: JSON.stringify(seqs) }) as [number, number][]) {
        if (droppable === 1) this.droppablePending -= count;
        sent += count;
      }
      this.counts.pending -= sent;
      this.bump('sent', sent);
    });
    this.loadCounts();
  }

  /** Files written before rows held several messages lack `count`: each of their rows is one message. */
  private migrate(): void {
    const columns = this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('sgmoe_outbox') as string[];
    if (!columns.includes('count')) this.db.exec('ALTER TABLE sgmoe_outbox ADD COLUMN count INTEGER NOT NULL DEFAULT 1');
  }

  private loadCounts(): void {
    const stored = Object.fromEntries(
      this.db.prepare('SELECT name, value FROM sgmoe_outbox_counters').raw().all() as [Counter, number][],
    ) as Record<Counter, number>;
    this.counts = {
      pending: this.db.prepare('SELECT COALESCE(SUM(count), 0) FROM sgmoe_outbox').pluck().get() as number,
      queued: stored.queued,
      sent: stored.sent,
      dropped: stored.dropped,
    };
    this.droppablePending = this.db.prepare('SELECT COALESCE(SUM(count), 0) FROM sgmoe_outbox WHERE droppable = 1').pluck().get() as number;
  }

  /** Stores a message durably (a row of its own) and returns its sequence number. */
  enqueue(message: OutboxMessage): number {
    return this.enqueueAll([message])[0].seq;
  }

  /**
   * Stores messages in one transaction, one row per kind, topic and QoS, and returns those rows once they are on
   * disk (one fsync for all). `beforeSync` runs between the commit and the fsync: the transport sends them then, so
   * delivery does not wait for the disk; whoever settles a frame still waits for this call, and so for the fsync.
   */
  enqueueAll(messages: readonly OutboxMessage[], beforeSync?: (entries: OutboxEntry[]) => void): OutboxEntry[] {
    this.assertOpen();
    const what = (): string => `${messages.length} ${[...new Set(messages.map((m) => m.kind))].join('/')} message(s)`;
    let entries: OutboxEntry[];
    try {
      entries = this.enqueueTx(groupsOf(messages, Date.now()));
    } catch (err) {
      this.loadCounts(); // the transaction rolled back: so did the counts it had bumped
      throw new SgmoeError('E_OUTBOX_WRITE', `could not store ${what()} in the outbox: ${errorMessage(err)}`, undefined, { cause: err });
    }
    beforeSync?.(entries);
    if (this.fsyncPerCommit) {
      try {
        this.sync();
      } catch (err) {
        // Stored but perhaps not on disk: a caller that retries stores them again (a duplicate, never a loss).
        throw new SgmoeError('E_OUTBOX_WRITE', `could not make ${what()} durable in the outbox: ${errorMessage(err)}`, undefined, { cause: err });
      }
    }
    return entries;
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
    const count = this.stmt.remove.get(seq) as number;
    this.droppablePending -= count;
    this.counts.pending -= count;
    const before = this.counts.dropped;
    this.bump('dropped', count);
    // One line per thousand drops: enough to see it happen without flooding the log during an outage.
    if (Math.floor(before / 1000) !== Math.floor(this.counts.dropped / 1000) || before === 0) {
      this.log.warn({ seq, dropped: this.counts.dropped, maxResults: this.options.maxResults }, 'outbox full: dropping the oldest results, rejections and health reports');
    }
  }

  /**
   * The rows after `afterSeq`, oldest first, until they hold `limit` messages or more (at least one row, whatever
   * its size, so a row larger than the limit still goes out).
   */
  next(afterSeq: number, limit: number): OutboxEntry[] {
    this.assertOpen();
    const entries: OutboxEntry[] = [];
    let messages = 0;
    for (const r of this.stmt.next.iterate(afterSeq) as IterableIterator<Row>) {
      entries.push({ seq: r.seq, kind: r.kind, topic: r.topic, qos: r.qos, payloads: decode(r), enqueuedAt: r.enqueued_at });
      messages += r.count;
      if (messages >= limit) break; // ends the iteration: the statement is reset
    }
    return entries;
  }

  /**
   * The broker has every message of these rows: delete them (one DELETE). Unknown sequence numbers (already
   * dropped) are ignored.
   */
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
