import { join } from 'node:path';
import pino from 'pino';
import { AuditWriter, droppedRecord, openAuditDb, queryDecisions, type CommittedBatch } from '../../src/audit';
import { tempDir } from '../helpers/tmp';
import { MODEL, decided, rejected } from './records';

const tmp = tempDir('sgmoe-audit-writer-');
afterAll(() => tmp.cleanup());
let n = 0;
const fresh = () => openAuditDb(join(tmp.path, `w${n++}.db`)).db;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

test('record() only buffers; a full batch is written in one transaction on the next turn of the event loop', async () => {
  const db = fresh();
  const batches: CommittedBatch[] = [];
  const writer = new AuditWriter(db, { batchRows: 10, flushIntervalMs: 60_000, onCommit: (b) => batches.push(b) });
  for (let i = 0; i < 9; i++) writer.record(decided(i, i % 4));
  await nextTurn();
  expect(batches).toEqual([]);
  expect(writer.counters).toMatchObject({ accepted: 9, written: 0, buffered: 9 });

  writer.record(decided(9, 1));
  expect(db.prepare('SELECT count(*) FROM decisions').pluck().get()).toBe(0);
  await nextTurn();
  expect(batches).toEqual([{ rows: 10, firstId: 1, lastId: 10 }]);
  expect(writer.counters).toMatchObject({ accepted: 10, written: 10, buffered: 0, batches: 1 });
  writer.close();
  db.close();
});

test('rows bound 64 to a statement read back exactly as rows written one at a time, ids in order', () => {
  // 130 = two multi-row INSERTs of 64 and two single rows, with every kind of record among them.
  const records = Array.from({ length: 130 }, (_, i) =>
    i % 7 === 3 ? rejected(i) : i % 11 === 5 ? droppedRecord({ frameId: `f-${i}` }, { code: 'E_BACKPRESSURE', message: 'queue full' }, MODEL, 5) : decided(i, i % 3 === 0 ? null : i % 4),
  );
  const batched = fresh();
  const batches: CommittedBatch[] = [];
  const writer = new AuditWriter(batched, { batchRows: 130, flushIntervalMs: 60_000, onCommit: (b) => batches.push(b) });
  for (const r of records) writer.record(r);
  writer.close();
  const oneByOne = fresh();
  const single = new AuditWriter(oneByOne, { flushIntervalMs: 60_000 });
  for (const r of records) {
    single.record(r);
    single.flush();
  }
  single.close();
  expect(batches).toEqual([{ rows: 130, firstId: 1, lastId: 130 }]);
  const rows = queryDecisions(batched, {});
  expect(rows.map((r) => r.id)).toEqual(records.map((_, i) => i + 1));
  expect(rows.map((r) => r.frameId)).toEqual(records.map((r) => r.frame.frameId));
  expect(new Set(rows.map((r) => r.status))).toEqual(new Set(['ok', 'rejected', 'dropped']));
  expect(rows).toEqual(queryDecisions(oneByOne, {}));
  batched.close();
  oneByOne.close();
});

test('a partial batch is written once flushIntervalMs has passed, not before', () => {
  jest.useFakeTimers();
  try {
    const db = fresh();
    const writer = new AuditWriter(db, { batchRows: 1000, flushIntervalMs: 20 });
    const rows = () => db.prepare('SELECT count(*) FROM decisions').pluck().get();
    writer.record(decided(0, 2));
    writer.record(rejected(1));
    jest.advanceTimersByTime(19);
    expect(rows()).toBe(0);
    jest.advanceTimersByTime(1);
    expect(rows()).toBe(2);
    writer.close();
    db.close();
  } finally {
    jest.useRealTimers();
  }
});

test('decided, rejected and dropped records read back with every field', () => {
  const db = fresh();
  const writer = new AuditWriter(db);
  const ok = decided(7, 3);
  writer.record(ok);
  writer.record(decided(8, null));
  writer.record(rejected(9));
  writer.record(droppedRecord({ frameId: 'f-10' }, { code: 'E_BACKPRESSURE', message: 'queue full (64 frames)' }, MODEL, 5));
  writer.close();
  const [a, b, c, d] = queryDecisions(db, {});
  expect(a).toMatchObject({
    id: 1,
    ts: ok.ts,
    receivedAt: ok.ts - 5,
    frameId: 'f-7',
    source: 'dir:/in',
    inputSha256: 'ab'.repeat(32),
    modelName: 'fashion-sgmoe',
    modelVersion: '1.0.0',
    status: 'ok',
    label: 'label-7',
    labelIndex: 7,
    score: 0.75,
    expert: 3,
    earlyExit: false,
    baseConfidence: 0.6,
    macs: 3000,
    timingsUs: { trunk: 100, base: 50, gate: 5, expert: 80, total: 107 },
    errorCode: null,
  });
  // Gate probabilities are stored as float32.
  a.gate!.forEach((p, i) => expect(p).toBeCloseTo(ok.gate[i], 6));
  expect(b).toMatchObject({ expert: null, earlyExit: true, gate: null });
  expect(c).toMatchObject({ status: 'rejected', label: null, expert: null, timingsUs: null, errorCode: 'E_FRAME_DECODE' });
  expect(c.errorMessage).toContain('expected a JPEG');
  expect(d).toMatchObject({ status: 'dropped', ts: 5, frameId: 'f-10', source: null, receivedAt: null, errorCode: 'E_BACKPRESSURE' });
  db.close();
});

test('a full buffer refuses records and counts them instead of blocking', () => {
  const db = fresh();
  const writer = new AuditWriter(db, { batchRows: 100, maxBuffered: 5, flushIntervalMs: 60_000 });
  const kept = Array.from({ length: 8 }, (_, i) => writer.record(decided(i, 0)));
  expect(kept).toEqual([true, true, true, true, true, false, false, false]);
  expect(writer.counters).toMatchObject({ accepted: 5, overflow: 3, buffered: 5 });
  writer.close();
  expect(writer.counters).toMatchObject({ accepted: 5, written: 5, overflow: 3, buffered: 0 });
  expect(writer.record(decided(99, 0))).toBe(false);
  db.close();
});

test('a full disk (SQLITE_FULL) is counted, not thrown, and writing resumes once there is room', () => {
  const db = fresh();
  const logged: Array<{ code?: string; msg: string }> = [];
  const logger = pino({}, { write: (line: string) => logged.push(JSON.parse(line)) });
  const writer = new AuditWriter(db, { batchRows: 500, flushIntervalMs: 60_000, logger });
  const pages = db.pragma('page_count', { simple: true }) as number;
  // The real SQLITE_FULL path: the database may not grow past its current size.
  db.pragma(`max_page_count = ${pages + 2}`);
  for (let i = 0; i < 2000; i++) writer.record(decided(i, i % 4));
  expect(() => writer.flush()).not.toThrow();
  const full = writer.counters;
  expect(full.failed).toBeGreaterThan(0);
  expect(full.written + full.failed).toBe(2000);
  expect(db.prepare('SELECT count(*) FROM decisions').pluck().get()).toBe(full.written);
  expect(logged.map((l) => l.code)).toContain('SQLITE_FULL');

  db.pragma('max_page_count = 1000000');
  for (let i = 2000; i < 2100; i++) writer.record(decided(i, 1));
  writer.flush();
  expect(writer.counters).toMatchObject({ accepted: 2100, written: full.written + 100, failed: full.failed });
  expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  writer.close();
  db.close();
});
