import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SgmoeError } from '../../src/errors';
import { Outbox, type OutboxMessage } from '../../src/transport/outbox';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-outbox-');
afterAll(() => tmp.cleanup());

let n = 0;
function dbPath(): string {
  return join(tmp.path, `outbox-${++n}.db`);
}
const result = (i: number): OutboxMessage => ({ kind: 'result', topic: 't/result', payload: `{"frameId":"${i}"}`, qos: 1 });
const alarm = (i: number): OutboxMessage => ({ kind: 'alarm', topic: 't/alarm', payload: `{"alarm":${i}}`, qos: 1 });

describe('Outbox', () => {
  it('hands messages out in order after a cursor and removes them on ack', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 100 });
    const seqs = [1, 2, 3, 4, 5].map((i) => outbox.enqueue(result(i)));
    expect(outbox.next(0, 3).flatMap((e) => e.payloads)).toEqual(['{"frameId":"1"}', '{"frameId":"2"}', '{"frameId":"3"}']);
    expect(outbox.next(seqs[2], 10).map((e) => e.seq)).toEqual(seqs.slice(3));
    outbox.ack([seqs[0], seqs[1]]);
    expect(outbox.next(0, 10).map((e) => e.seq)).toEqual(seqs.slice(2));
    expect(outbox.stats()).toEqual({ pending: 3, queued: 5, sent: 2, dropped: 0 });
    outbox.close();
  });

  it('stores the messages of one call as one row per kind and topic, handed out and acknowledged whole', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 100 });
    const rows = outbox.enqueueAll([result(1), alarm(1), result(2), result(3)]);
    expect(rows.map((r) => [r.kind, r.payloads])).toEqual([
      ['result', ['{"frameId":"1"}', '{"frameId":"2"}', '{"frameId":"3"}']],
      ['alarm', ['{"alarm":1}']],
    ]);
    expect(outbox.stats()).toEqual({ pending: 4, queued: 4, sent: 0, dropped: 0 });
    expect(outbox.next(0, 1).map((e) => e.payloads)).toEqual([rows[0].payloads]); // a row larger than the limit still goes out
    expect(outbox.next(0, 4)).toEqual(rows);
    outbox.ack([rows[0].seq]);
    expect(outbox.stats()).toEqual({ pending: 1, queued: 4, sent: 3, dropped: 0 });
    outbox.close();
  });

  it('keeps a payload holding a newline whole, in a row of its own', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 100 });
    const odd = { ...result(2), payload: '{"note":\n"two lines"}' };
    outbox.enqueueAll([result(1), odd, result(3)]);
    expect(outbox.next(0, 10).map((e) => e.payloads)).toEqual([['{"frameId":"1"}', '{"frameId":"3"}'], [odd.payload]]);
    outbox.close();
  });

  it('drops a whole row of results when full and counts each of its messages', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 4 });
    outbox.enqueueAll([result(1), result(2), result(3)]);
    outbox.enqueueAll([result(4), result(5)]);
    expect(outbox.next(0, 100).flatMap((e) => e.payloads)).toEqual(['{"frameId":"4"}', '{"frameId":"5"}']);
    expect(outbox.stats()).toEqual({ pending: 2, queued: 5, sent: 0, dropped: 3 });
    outbox.close();
  });

  it('bounds results and rejections together: a frame\'s outcome counts once, and the oldest go first whatever their kind', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 3 });
    const rejection = (i: number): OutboxMessage => ({ kind: 'rejected', topic: 't/rejected', payload: `{"frameId":"${i}"}`, qos: 1 });
    outbox.enqueueAll([rejection(1), rejection(2)]);
    outbox.enqueue(result(3));
    outbox.enqueueAll([rejection(4), alarm(5)]);
    expect(outbox.next(0, 100).map((e) => e.topic)).toEqual(['t/result', 't/rejected', 't/alarm']);
    expect(outbox.stats()).toEqual({ pending: 3, queued: 5, sent: 0, dropped: 2 });
    outbox.close();
  });

  it('reads a file written before rows held several messages: each old row is one message', () => {
    const path = dbPath();
    const old = new Database(path);
    old.exec(`CREATE TABLE sgmoe_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, topic TEXT NOT NULL,
      payload TEXT NOT NULL, qos INTEGER NOT NULL, droppable INTEGER NOT NULL, enqueued_at INTEGER NOT NULL);
      CREATE TABLE sgmoe_outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO sgmoe_outbox_counters VALUES ('queued', 2), ('sent', 0), ('dropped', 0);
      INSERT INTO sgmoe_outbox (kind, topic, payload, qos, droppable, enqueued_at) VALUES
        ('result', 't/result', '["not","a","group"]', 1, 1, 0), ('alarm', 't/alarm', '{"alarm":0}', 1, 0, 0);`);
    old.close();
    const outbox = Outbox.open(path, { maxResults: 100 });
    expect(outbox.stats()).toEqual({ pending: 2, queued: 2, sent: 0, dropped: 0 });
    expect(outbox.next(0, 10).map((e) => e.payloads)).toEqual([['["not","a","group"]'], ['{"alarm":0}']]);
    outbox.enqueueAll([result(1), result(2)]);
    expect(outbox.stats().pending).toBe(4);
    outbox.close();
  });

  it('never reuses a sequence number, even after it emptied', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 100 });
    const first = outbox.enqueue(result(1));
    outbox.ack([first]);
    expect(outbox.enqueue(result(2))).toBeGreaterThan(first);
    outbox.close();
  });

  it('drops the oldest results when full but never an alarm, and counts what it dropped', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 3 });
    outbox.enqueue(alarm(0));
    for (let i = 1; i <= 6; i++) outbox.enqueue(result(i));
    outbox.enqueue(alarm(7));
    const left = outbox.next(0, 100).flatMap((e) => e.payloads);
    expect(left).toEqual(['{"alarm":0}', '{"frameId":"4"}', '{"frameId":"5"}', '{"frameId":"6"}', '{"alarm":7}']);
    expect(outbox.stats()).toEqual({ pending: 5, queued: 8, sent: 0, dropped: 3 });
    outbox.close();
  });

  it('keeps alarms beyond the bound: they are never dropped', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 2 });
    for (let i = 0; i < 5; i++) outbox.enqueue(alarm(i));
    expect(outbox.stats()).toMatchObject({ pending: 5, dropped: 0 });
    outbox.close();
  });

  it('counts an ack of an already dropped message as nothing sent', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 1 });
    const a = outbox.enqueue(result(1));
    const b = outbox.enqueue(result(2));
    outbox.ack([a, b]);
    expect(outbox.stats()).toEqual({ pending: 0, queued: 2, sent: 1, dropped: 1 });
    outbox.close();
  });

  it('keeps messages and counters across a restart (close and reopen the file)', () => {
    const path = dbPath();
    const before = Outbox.open(path, { maxResults: 2 });
    for (let i = 1; i <= 4; i++) before.enqueue(result(i));
    before.ack([before.next(0, 1)[0].seq]);
    before.close();
    const after = Outbox.open(path, { maxResults: 2 });
    expect(after.stats()).toEqual({ pending: 1, queued: 4, sent: 1, dropped: 2 });
    expect(after.next(0, 10).flatMap((e) => e.payloads)).toEqual(['{"frameId":"4"}']);
    after.close();
  });

  it('lives beside other tables in a database it is given, and leaves that database open', () => {
    const db = new Database(dbPath());
    db.exec('CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)');
    db.prepare('INSERT INTO audit (note) VALUES (?)').run('kept');
    const outbox = new Outbox(db, { maxResults: 10 });
    outbox.enqueue(result(1));
    outbox.close();
    expect(db.prepare('SELECT COUNT(*) FROM sgmoe_outbox').pluck().get()).toBe(1);
    expect(db.prepare('SELECT note FROM audit').pluck().get()).toBe('kept');
    db.close();
  });

  it('refuses to work once closed, with E_OUTBOX_CLOSED', () => {
    const outbox = Outbox.open(dbPath(), { maxResults: 10 });
    outbox.close();
    expect(() => outbox.enqueue(result(1))).toThrow(SgmoeError);
    expect(() => outbox.enqueue(result(1))).toThrow(expect.objectContaining({ code: 'E_OUTBOX_CLOSED' }));
  });

  it('names the file when it cannot open it', () => {
    expect(() => Outbox.open(join(tmp.path, 'missing-dir', 'x.db'), { maxResults: 1 })).toThrow(
      expect.objectContaining({ code: 'E_OUTBOX_OPEN', message: expect.stringContaining('missing-dir') }),
    );
  });

  /** An outbox file holding 40 queued results, 2 of them already acknowledged. */
  function filledFile(): string {
    const path = dbPath();
    const outbox = Outbox.open(path, { maxResults: 100 });
    for (let i = 0; i < 40; i++) outbox.enqueue(result(i));
    outbox.ack([1, 2]);
    outbox.close();
    return path;
  }

  it('moves a truncated file aside and starts a fresh one, saying the number of results it held is unknown', () => {
    const path = filledFile();
    truncateSync(path, statSync(path).size / 2);
    const outbox = Outbox.open(path, { maxResults: 100 });
    expect(outbox.recovered).toMatchObject({ code: 'SQLITE_CORRUPT', resultsMayBeLost: null, movedTo: expect.stringContaining(`${path}.corrupt-`) });
    expect(existsSync(outbox.recovered!.movedTo)).toBe(true);
    expect(outbox.stats()).toEqual({ pending: 0, queued: 0, sent: 0, dropped: 0 });
    outbox.enqueue(result(1));
    expect(outbox.next(0, 10)).toHaveLength(1);
    outbox.close();
  });

  it('moves a file with a damaged page aside and counts the results that may be lost from what it can still read', () => {
    const path = filledFile();
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xab), 0, 4096, statSync(path).size - 4096);
    closeSync(fd);
    const outbox = Outbox.open(path, { maxResults: 100 });
    expect(outbox.recovered).toMatchObject({ code: 'SQLITE_CORRUPT', resultsMayBeLost: 38 });
    expect(outbox.stats().pending).toBe(0);
    outbox.close();
  });

  it('opens a healthy file without recovering it', () => {
    const path = filledFile();
    const outbox = Outbox.open(path, { maxResults: 100 });
    expect(outbox.recovered).toBeNull();
    expect(outbox.stats()).toEqual({ pending: 38, queued: 40, sent: 2, dropped: 0 });
    outbox.close();
  });
});
