import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { AuditWriter, decidedRecord, exportDecisions, listEvents, openAuditDb, openAuditDbReadOnly, queryDecisions, SCHEMA_VERSION } from '../../src/audit';
import { SgmoeError } from '../../src/errors';
import { tempDir } from '../helpers/tmp';
import { decided, decision } from './records';

const tmp = tempDir('sgmoe-audit-open-');
afterAll(() => tmp.cleanup());

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SgmoeError);
    return (err as SgmoeError).code;
  }
  return undefined;
}

test('a new file gets WAL, NORMAL sync, incremental auto-vacuum and the current schema; reopening keeps the rows', () => {
  const file = join(tmp.path, 'sub', 'dir', 'new.db');
  const { db, recovered } = openAuditDb(file);
  expect(recovered).toBeNull();
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
  expect(db.pragma('auto_vacuum', { simple: true })).toBe(2); // INCREMENTAL
  expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  const writer = new AuditWriter(db);
  writer.record(decided(1, 2));
  writer.close();
  db.close();
  const again = openAuditDb(file);
  expect(again.db.prepare('SELECT frame_id FROM decisions').pluck().all()).toEqual(['f-1']);
  again.db.close();
});

test('a file of the previous schema (2) is upgraded in place: its rows kept, the signal-window columns added empty', () => {
  const file = join(tmp.path, 'schema-2.db');
  const fresh = openAuditDb(file).db;
  for (const column of ['window_offset', 'window_start', 'rpm', 'load', 'threshold']) fresh.exec(`ALTER TABLE decisions DROP COLUMN ${column}`);
  fresh.exec('DROP TABLE results_first');
  fresh.pragma('user_version = 2');
  fresh.prepare(`INSERT INTO decisions (ts, frame_id, status) VALUES (1, 'old-frame', 'ok')`).run();
  fresh.close();
  const { db } = openAuditDb(file);
  expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  expect(db.prepare('SELECT frame_id, window_offset, rpm FROM decisions').all()).toEqual([{ frame_id: 'old-frame', window_offset: null, rpm: null }]);
  db.close();
});

test('a file of schema 3 is upgraded in place: its rows kept, the threshold column added empty, and written on new rows (and exported)', async () => {
  const file = join(tmp.path, 'schema-3.db');
  const fresh = openAuditDb(file).db;
  fresh.exec('ALTER TABLE decisions DROP COLUMN threshold');
  fresh.exec('DROP TABLE results_first');
  fresh.pragma('user_version = 3');
  fresh.prepare(`INSERT INTO decisions (ts, frame_id, status, label, score) VALUES (1, 'old-anomaly', 'ok', 'anomalous', 2.5)`).run();
  fresh.close();
  const { db } = openAuditDb(file);
  expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  const writer = new AuditWriter(db);
  writer.record(decidedRecord({ ...decision(2, 0), score: 2.5, extra: { anomaly: { score: 2.5, threshold: 1.75, verdict: 'anomalous', grid: [1, 1], map: [2.5] } } }, { frameId: 'new-anomaly' }, 2));
  writer.record(decided(3, 1));
  writer.close();
  expect(queryDecisions(db, {}).map((r) => [r.frameId, r.score, r.threshold])).toEqual([
    ['old-anomaly', 2.5, null],
    ['new-anomaly', 2.5, 1.75],
    ['f-3', 0.75, null],
  ]);
  const out = new PassThrough();
  let csv = '';
  out.on('data', (chunk: Buffer) => (csv += chunk.toString()));
  await exportDecisions(db, {}, 'csv', out);
  const [header, ...rows] = csv.trimEnd().split('\n').map((line) => line.split(','));
  expect(rows.map((row) => row[header.indexOf('threshold')])).toEqual(['', '1.75', '']);
  db.close();
});

test('a file that is not a database is moved aside and a fresh one started, with an event saying so', () => {
  const file = join(tmp.path, 'garbage.db');
  writeFileSync(file, Buffer.alloc(8192, 0x41));
  const { db, recovered } = openAuditDb(file, { now: () => Date.parse('2025-01-02T03:04:05.678Z') });
  expect(recovered).toMatchObject({ movedTo: `${file}.corrupt-2025-01-02T03-04-05-678Z`, code: 'SQLITE_NOTADB' });
  expect(existsSync(recovered!.movedTo)).toBe(true);
  const [event] = listEvents(db);
  expect(event).toMatchObject({ kind: 'db_recovered', details: { movedTo: recovered!.movedTo, code: 'SQLITE_NOTADB' } });
  expect(db.prepare('SELECT count(*) FROM decisions').pluck().get()).toBe(0);
  db.close();
});

test('a database with damaged pages is found by the check at open and moved aside', () => {
  const file = join(tmp.path, 'damaged.db');
  const { db } = openAuditDb(file);
  const writer = new AuditWriter(db);
  for (let i = 0; i < 5000; i++) writer.record(decided(i, i % 4));
  writer.close();
  db.pragma('wal_checkpoint(TRUNCATE)');
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  db.close();
  // Scribble over pages in the middle of the table's b-tree.
  const fd = openSync(file, 'r+');
  for (let p = Math.floor(pages / 3); p < Math.floor(pages / 3) + 4; p++) writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, p * pageSize);
  closeSync(fd);

  const opened = openAuditDb(file);
  expect(opened.recovered?.code).toBe('SQLITE_CORRUPT');
  expect(readdirSync(tmp.path).filter((f) => f.startsWith('damaged.db.corrupt-'))).toHaveLength(1);
  expect(opened.db.prepare('SELECT count(*) FROM decisions').pluck().get()).toBe(0);
  expect(listEvents(opened.db).map((e) => e.kind)).toEqual(['db_recovered']);
  opened.db.close();
});

test('a path that cannot be written gives E_AUDIT_UNWRITABLE, naming the path', () => {
  const notADir = join(tmp.path, 'plain-file');
  writeFileSync(notADir, 'x');
  const file = join(notADir, 'audit.db');
  expect(codeOf(() => openAuditDb(file))).toBe('E_AUDIT_UNWRITABLE');
  expect(() => openAuditDb(file)).toThrow(file);
});

test('a database locked by another process gives E_AUDIT_LOCKED after the busy timeout', () => {
  const file = join(tmp.path, 'locked.db');
  openAuditDb(file).db.close();
  const holder = new Database(file);
  holder.pragma('locking_mode = EXCLUSIVE');
  holder.exec('BEGIN EXCLUSIVE');
  try {
    expect(codeOf(() => openAuditDb(file, { busyTimeoutMs: 50 }))).toBe('E_AUDIT_LOCKED');
  } finally {
    holder.exec('COMMIT');
    holder.close();
  }
  // The lock gone, the file opens as it was: nothing was moved aside.
  const { db, recovered } = openAuditDb(file);
  expect(recovered).toBeNull();
  db.close();
});

test('a database from a newer release is refused (E_AUDIT_SCHEMA), not downgraded or moved', () => {
  const file = join(tmp.path, 'newer.db');
  const db = new Database(file);
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  expect(codeOf(() => openAuditDb(file))).toBe('E_AUDIT_SCHEMA');
  expect(codeOf(() => openAuditDbReadOnly(file))).toBe('E_AUDIT_SCHEMA');
  expect(existsSync(file)).toBe(true);
});

test('read-only open: a missing file is E_AUDIT_NOT_FOUND, a non-database E_AUDIT_UNREADABLE', () => {
  expect(codeOf(() => openAuditDbReadOnly(join(tmp.path, 'missing.db')))).toBe('E_AUDIT_NOT_FOUND');
  const junk = join(tmp.path, 'junk.db');
  writeFileSync(junk, Buffer.alloc(4096, 0x42));
  expect(codeOf(() => openAuditDbReadOnly(junk))).toBe('E_AUDIT_UNREADABLE');
});
