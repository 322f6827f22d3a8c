import type { Database } from 'better-sqlite3';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { auditStats, AuditWriter, droppedRecord, EventLog, exportDecisions, openAuditDb, queryDecisions, rejectedRecord, whereClause } from '../../src/audit';
import { percentile } from '../../scripts/bench/lib';
import { tempDir } from '../helpers/tmp';
import { decided, MODEL } from './records';

const tmp = tempDir('sgmoe-audit-query-');
const T0 = Date.parse('2025-03-01T00:00:00Z');
const MIN = 60_000;
let db: Database;

/** 50 decisions a minute apart (40 by 1.0.0, then 10 by 1.1.0), 5 rejected, 2 dropped, one alarm. */
beforeAll(() => {
  db = openAuditDb(join(tmp.path, 'q.db')).db;
  const writer = new AuditWriter(db);
  for (let i = 0; i < 50; i++) {
    const model = i < 40 ? MODEL : { ...MODEL, version: '1.1.0' };
    writer.record(decided(i, i % 5 === 4 ? null : i % 4, T0 + i * MIN, model));
  }
  for (let i = 0; i < 5; i++) writer.record(rejectedRecord({ frameId: `bad-${i}` }, { code: 'E_FRAME_DECODE', message: 'expected "JPEG", found: text, 3 bytes' }, MODEL, T0 + i * MIN));
  for (let i = 0; i < 2; i++) writer.record(droppedRecord({ frameId: `late-${i}` }, { code: 'E_BACKPRESSURE', message: 'queue full' }, MODEL, T0));
  writer.close();
  new EventLog(db).write({ kind: 'alarm_raised', message: 'router collapse', ts: T0 + 10 * MIN, details: { alarm: 'router_collapse' } });
});
afterAll(() => {
  db.close();
  tmp.cleanup();
});

test('filters: time window, label, expert, no expert, status, model version', () => {
  const frames = (f: Parameters<typeof queryDecisions>[1]) => queryDecisions(db, f).map((r) => r.frameId);
  expect(frames({ since: T0 + 45 * MIN, status: 'ok' })).toEqual(['f-45', 'f-46', 'f-47', 'f-48', 'f-49']);
  expect(frames({ since: T0 + 10 * MIN, until: T0 + 12 * MIN })).toEqual(['f-10', 'f-11']);
  expect(frames({ label: 'label-3' })).toEqual(['f-3', 'f-13', 'f-23', 'f-33', 'f-43']);
  expect(frames({ expert: 2, until: T0 + 20 * MIN })).toEqual(['f-2', 'f-6', 'f-10', 'f-18']);
  expect(frames({ expert: 'none', until: T0 + 20 * MIN })).toEqual(['f-4', 'f-9', 'f-14', 'f-19']);
  expect(frames({ status: 'dropped' })).toEqual(['late-0', 'late-1']);
  expect(frames({ modelVersion: '1.1.0' })).toHaveLength(10);
  expect(queryDecisions(db, {}, { limit: 2, order: 'desc' }).map((r) => r.frameId)).toEqual(['late-1', 'late-0']);
});

test('filter values are bound as parameters, never spliced into the SQL', () => {
  const evil = "label-3' OR '1'='1";
  const { sql, params } = whereClause({ label: evil, modelVersion: '1.0.0; DROP TABLE decisions' });
  expect(sql).toBe('WHERE label = @label AND model_version = @modelVersion');
  expect(params).toEqual({ label: evil, modelVersion: '1.0.0; DROP TABLE decisions' });
  expect(queryDecisions(db, { label: evil })).toEqual([]);
});

test('stats: counts by status and model, expert shares, early-exit rate, latency percentiles, alarms', () => {
  const s = auditStats(db, {});
  expect(s.total).toBe(57);
  expect(s.byStatus).toEqual({ ok: 50, rejected: 5, dropped: 2 });
  expect(s.byModel).toEqual([
    { name: MODEL.name, version: '1.0.0', count: 40 },
    { name: MODEL.name, version: '1.1.0', count: 10 },
  ]);
  expect(s.routed).toBe(40);
  expect(s.experts.map((e) => e.count).reduce((a, b) => a + b)).toBe(40);
  expect(s.experts.find((e) => e.expert === 0)).toEqual({ expert: 0, count: 10, share: 0.25 });
  expect(s.earlyExitRate).toBeCloseTo(10 / 50, 12);
  const totals = queryDecisions(db, { status: 'ok' }).map((r) => r.timingsUs!.total);
  expect(s.latencyUs).toEqual({ p50: percentile(totals, 50), p90: percentile(totals, 90), p99: percentile(totals, 99), max: Math.max(...totals) });
  expect(s.alarms.events.map((e) => e.details?.alarm)).toEqual(['router_collapse']);
  expect(s.alarms.active).toHaveLength(1);

  // A window before the alarm sees no alarm events and nothing active at its end.
  const early = auditStats(db, { until: T0 + 5 * MIN });
  expect(early.byStatus).toEqual({ ok: 5, rejected: 5, dropped: 2 });
  expect(early.alarms).toEqual({ events: [], active: [] });
  // A window after it: the alarm is still active though its event lies before the window.
  expect(auditStats(db, { since: T0 + 30 * MIN }).alarms.active).toHaveLength(1);
});

test('export: CSV with a header and quoted fields, JSONL that parses back to the rows', async () => {
  const csv = await collect((out) => exportDecisions(db, { status: 'rejected' }, 'csv', out));
  const lines = csv.trimEnd().split('\n');
  expect(lines).toHaveLength(6);
  expect(lines[0].split(',')).toContain('error_message');
  expect(lines[1]).toContain('"expected ""JPEG"", found: text, 3 bytes"');

  const jsonl = await collect((out) => exportDecisions(db, { modelVersion: '1.1.0' }, 'jsonl', out));
  expect(jsonl.trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual(queryDecisions(db, { modelVersion: '1.1.0' }));
});

async function collect(run: (out: PassThrough) => Promise<number>): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await run(out);
  out.end();
  return Buffer.concat(chunks).toString();
}
