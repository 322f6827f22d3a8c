import { join } from 'node:path';
import { AuditWriter, EventLog, openAuditDb, Retention } from '../../src/audit';
import { tempDir } from '../helpers/tmp';
import { decided } from './records';

const tmp = tempDir('sgmoe-audit-retention-');
afterAll(() => tmp.cleanup());
let n = 0;

/** A database holding `rows` decisions with ts = T0 + i seconds. */
function filled(rows: number) {
  const { db } = openAuditDb(join(tmp.path, `r${n++}.db`));
  const writer = new AuditWriter(db, { batchRows: 5000 });
  for (let i = 0; i < rows; i++) writer.record(decided(i, i % 4, T0 + i * 1000));
  writer.close();
  return db;
}
const T0 = 1_700_000_000_000;
const count = (db: ReturnType<typeof filled>) => db.prepare('SELECT count(*) FROM decisions').pluck().get() as number;

test('maxRows keeps the newest rows, in steps of batchRows', async () => {
  const db = filled(10_000);
  const retention = new Retention(db, { maxRows: 2500, batchRows: 1000 });
  expect(retention.step()).toBe(1000);
  expect(count(db)).toBe(9000);
  expect(await retention.prune()).toBe(6500);
  expect(count(db)).toBe(2500);
  expect(db.prepare('SELECT min(id), max(id) FROM decisions').raw().get()).toEqual([7501, 10_000]);
  expect(await retention.prune()).toBe(0);
  db.close();
});

test('maxAge removes decisions and events older than the bound, and nothing newer', async () => {
  const db = filled(5000);
  const events = new EventLog(db);
  events.write({ kind: 'start', message: 'old', ts: T0 });
  events.write({ kind: 'config_changed', message: 'new', ts: T0 + 4000 * 1000 });
  // "now" is the newest row; keep one hour.
  const now = T0 + 4999 * 1000;
  const retention = new Retention(db, { maxAgeMs: 3_600_000, batchRows: 500 }, { now: () => now });
  await retention.prune();
  const cutoff = now - 3_600_000;
  expect(db.prepare('SELECT min(ts) FROM decisions').pluck().get()).toBe(cutoff);
  expect(count(db)).toBe(3601);
  expect(db.prepare('SELECT message FROM events').pluck().all()).toEqual(['new']);
  db.close();
});

test('maxBytes prunes the oldest rows until the pages in use fit, and gives the pages back to the file', async () => {
  const db = filled(20_000);
  const retention = new Retention(db, { maxBytes: 1_000_000, batchRows: 1000 });
  const before = retention.usedBytes();
  const pagesBefore = db.pragma('page_count', { simple: true }) as number;
  expect(before).toBeGreaterThan(2_000_000);
  const deleted = await retention.prune();
  expect(deleted).toBeGreaterThan(0);
  expect(retention.usedBytes()).toBeLessThanOrEqual(1_000_000);
  // No more than one step past the bound: the newest rows stay.
  expect(retention.usedBytes()).toBeGreaterThan(1_000_000 - 1000 * (before / 20_000) * 1.5);
  expect(db.prepare('SELECT max(id) FROM decisions').pluck().get()).toBe(20_000);
  expect(db.pragma('freelist_count', { simple: true })).toBe(0);
  expect(db.pragma('page_count', { simple: true })).toBeLessThan(pagesBefore);
  db.close();
});

test('the writer keeps writing while a prune is in progress, and nothing it accepted is lost', async () => {
  const db = filled(20_000);
  const retention = new Retention(db, { maxRows: 1000, batchRows: 500 });
  const writer = new AuditWriter(db, { batchRows: 100, flushIntervalMs: 60_000 });
  const pass = retention.prune();
  // The prune yields between steps: records handed over now are written before it ends.
  for (let i = 0; i < 300; i++) writer.record(decided(20_000 + i, 1));
  await pass;
  // Written between two steps of the pass, not at close.
  expect(writer.counters).toMatchObject({ accepted: 300, written: 300, failed: 0 });
  writer.close();
  expect(db.prepare('SELECT count(*) FROM decisions WHERE id > 20000').pluck().get()).toBe(300);
  expect(count(db)).toBeLessThanOrEqual(1300);
  db.close();
});
