import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuditWriter, EventLog, decidedRecord, openAuditDb } from '../../src/audit';
import { parseTime } from '../../src/cli/commands/audit';
import { tempDir } from '../helpers/tmp';
import { decided, decision, rejected } from './records';
import { auditCli as sgmoe } from '../helpers/audit-cli';
import { sgmoeAsync } from '../helpers/cli';

const tmp = tempDir('sgmoe-audit-cli-');
const file = join(tmp.path, 'audit.db');
const now = Date.now();
const HOUR = 3_600_000;

/** 20 decisions from two days ago and 10 from the last half hour (expert i % 4), plus 3 rejected now. */
beforeAll(() => {
  const { db } = openAuditDb(file);
  const writer = new AuditWriter(db);
  for (let i = 0; i < 20; i++) writer.record(decided(i, i % 4, now - 48 * HOUR + i));
  for (let i = 20; i < 30; i++) writer.record(decided(i, i % 4, now - HOUR / 2 + i));
  for (let i = 30; i < 33; i++) writer.record(rejected(i, now - 1000));
  writer.close();
  db.close();
});
afterAll(() => tmp.cleanup());

test('relative and ISO times', () => {
  expect(parseTime('1h', 10 * HOUR)).toBe(9 * HOUR);
  expect(parseTime('90s', 100_000)).toBe(10_000);
  expect(parseTime('2d', 5 * 86_400_000)).toBe(3 * 86_400_000);
  expect(parseTime('2025-03-01T00:00:00Z')).toBe(Date.parse('2025-03-01T00:00:00Z'));
  expect(() => parseTime('yesterday')).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
});

test('stats --json over the last hour counts only that window', async () => {
  const stats = JSON.parse(await sgmoe('stats', '--db', file, '--since', '1h', '--json'));
  expect(stats.byStatus).toEqual({ ok: 10, rejected: 3, dropped: 0 });
  expect(stats.experts.map((e: { expert: number; count: number }) => [e.expert, e.count])).toEqual([
    [0, 3],
    [1, 3],
    [2, 2],
    [3, 2],
  ]);
  const all = JSON.parse(await sgmoe('stats', '--db', file, '--json'));
  expect(all.total).toBe(33);
});

test('stats as text names the counts, shares and latency', async () => {
  const text = await sgmoe('stats', '--db', file);
  expect(text).toContain('decisions: 33 (ok 30, rejected 3, dropped 0)');
  expect(text).toMatch(/experts \(30 routed\): #0 8 \(26\.7%\)/);
  expect(text).toMatch(/latency total_us: p50 \d+/);
});

test('stats counts an anomaly package\'s verdicts and the operators\' standing reviews of them, window by window', async () => {
  const anomalyDb = join(tmp.path, 'anomaly.db');
  const { db } = openAuditDb(anomalyDb);
  const writer = new AuditWriter(db);
  // Every third frame flagged (a-0, a-3, a-6, a-9); a-10 and a-11 decided two days ago.
  const flagged = (i: number) => i % 3 === 0;
  for (let i = 0; i < 12; i++) {
    const verdict = flagged(i) ? 'anomalous' : 'good';
    const d = { ...decision(i, i % 2), frameId: `a-${i}`, labelIndex: flagged(i) ? 1 : 0, label: verdict };
    d.extra = { anomaly: { score: flagged(i) ? 1.5 : 0.2, threshold: 1, verdict, grid: [1, 1], map: [0] } };
    writer.record(decidedRecord(d, { frameId: `a-${i}`, source: 'dir:/in' }, i < 10 ? now - 1000 + i : now - 48 * HOUR + i));
  }
  writer.close();
  db.close();
  const review = (frame: string, verdict: string) => sgmoe('review', '--db', anomalyDb, '--frame', frame, '--verdict', verdict, '--by', 'anna');
  await review('a-0', 'defect'); // agrees
  await review('a-3', 'defect');
  await review('a-3', 'good'); // corrected: the latest stands, a false alarm
  await review('a-4', 'defect'); // a miss
  await review('a-10', 'good'); // agrees, outside the last hour

  const stats = JSON.parse(await sgmoe('stats', '--db', anomalyDb, '--since', '1h', '--json'));
  expect(stats.anomaly).toEqual({ decided: 10, anomalous: 4, rate: 0.4, reviewed: { good: 1, defect: 2, falseAlarms: 1, misses: 1 } });
  const text = await sgmoe('stats', '--db', anomalyDb);
  expect(text).toContain('anomalies: 4 of 12 (33.3%); reviewed 4 (good 2, defect 2), false alarms 1, misses 1');
  // A classification log has no anomaly line.
  expect(JSON.parse(await sgmoe('stats', '--db', file, '--json')).anomaly).toBeNull();
  expect(await sgmoe('stats', '--db', file)).not.toContain('anomalies:');
});

test('query filters by expert and status and prints one JSON row per line', async () => {
  const rows = (await sgmoe('query', '--db', file, '--expert', '2', '--since', '1h')).trim().split('\n').map((l) => JSON.parse(l));
  expect(rows.map((r) => r.frameId)).toEqual(['f-22', 'f-26']);
  const bad = (await sgmoe('query', '--db', file, '--status', 'rejected', '--limit', '2', '--newest-first')).trim().split('\n').map((l) => JSON.parse(l));
  expect(bad.map((r) => [r.frameId, r.errorCode])).toEqual([
    ['f-32', 'E_FRAME_DECODE'],
    ['f-31', 'E_FRAME_DECODE'],
  ]);
});

test('export --format csv --out FILE writes a header and every matching row', async () => {
  const out = join(tmp.path, 'export.csv');
  await sgmoe('export', '--db', file, '--label', 'label-1', '--format', 'csv', '--out', out);
  const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
  expect(lines[0].startsWith('id,time,received_at,frame_id')).toBe(true);
  expect(lines.slice(1).map((l) => l.split(',')[3])).toEqual(['f-1', 'f-11', 'f-21']);
});

test('bad options and a missing file are clear errors with a code', async () => {
  await expect(sgmoe('query', '--db', file, '--status', 'maybe')).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('--status') });
  await expect(sgmoe('query', '--db', file, '--expert', 'two')).rejects.toMatchObject({ code: 'E_USAGE' });
  await expect(sgmoe('export', '--db', file, '--format', 'xml')).rejects.toMatchObject({ code: 'E_USAGE' });
  await expect(sgmoe('stats', '--db', join(tmp.path, 'nope.db'))).rejects.toMatchObject({ code: 'E_AUDIT_NOT_FOUND' });
});

test('the sgmoe command itself: audit export as JSONL to stdout, and exit 1 with the code on error', async () => {
  const run = promisify(execFile);
  const main = join(__dirname, '..', '..', 'src', 'cli', 'main.ts');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', main, 'audit', 'export', '--db', file, '--format', 'jsonl', '--status', 'rejected']);
  expect(stdout.trim().split('\n').map((l) => JSON.parse(l).frameId)).toEqual(['f-30', 'f-31', 'f-32']);
  await expect(run(process.execPath, ['--import', 'tsx', main, 'audit', 'stats', '--db', join(tmp.path, 'nope.db')])).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringContaining('E_AUDIT_NOT_FOUND'),
  });
});

test('stats says the span it covers, and an alarm that went from one fault to another is raised since it first left normal', async () => {
  const events = join(tmp.path, 'alarms.db');
  const { db } = openAuditDb(events);
  let at = now - 10_000;
  const log = new EventLog(db, { now: () => (at += 1000) });
  const raised = (machine: string, from: string | null, to: string) =>
    log.write({ kind: 'alarm_raised', message: `${machine}: condition ${from} -> ${to}`, details: { kind: 'condition_change', machine, from, to } });
  raised('m1', null, 'outer'); // now - 9000
  raised('m2', null, 'ball');
  raised('m1', 'outer', 'inner');
  log.write({ kind: 'alarm_cleared', message: 'm2: condition ball -> healthy', details: { kind: 'condition_change', machine: 'm2', from: 'ball', to: 'healthy' } });
  raised('m2', 'healthy', 'inner'); // now - 5000: raised again after it cleared
  db.close();
  const text = await sgmoe('stats', '--db', events);
  expect(text).toContain(`audit ${events}, every row\n`);
  const iso = (t: number) => new Date(t).toISOString();
  expect(text).toContain(`active: condition_change (m1) since ${iso(now - 9000)}, condition_change (m2) since ${iso(now - 5000)}`);
  expect(await sgmoe('stats', '--db', events, '--since', iso(now - 60_000))).toContain(`audit ${events}, ${iso(now - 60_000)} to now\n`);
});

test('query says on stderr when --limit cut the rows, and --limit all gives every one', async () => {
  const cut = await sgmoeAsync('audit', 'query', '--db', file, '--limit', '5');
  expect(cut.stdout.trim().split('\n')).toHaveLength(5);
  expect(cut.stderr).toContain('5 of 33 matching rows (--limit 5; --limit all for every row)');
  const all = await sgmoeAsync('audit', 'query', '--db', file, '--limit', 'all');
  expect(all.stdout.trim().split('\n')).toHaveLength(33);
  expect(all.stderr).toBe('');
  await expect(sgmoe('query', '--db', file, '--limit', '0')).rejects.toMatchObject({ code: 'E_USAGE', message: expect.stringContaining('"all"') });
});

test('events lists the node events of the kinds asked for, in order, with their details', async () => {
  const events = join(tmp.path, 'events.db');
  const { db } = openAuditDb(events);
  const log = new EventLog(db, { now: () => now - 1000 });
  log.write({ kind: 'start', message: 'node started' });
  log.write({ kind: 'config_changed', message: 'threshold set to 0.8', details: { threshold: 0.8 } });
  log.write({ kind: 'model_rolled_back', message: 'rolled back to 1.0.0', details: { correlationId: 'c-1' } });
  db.close();
  const lines = (await sgmoe('events', '--db', events, '--kind', 'config_changed,model_rolled_back')).trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((e) => e.kind)).toEqual(['config_changed', 'model_rolled_back']);
  expect(lines[1].details).toEqual({ correlationId: 'c-1' });
  await expect(sgmoe('events', '--db', events, '--kind', 'nonsense')).rejects.toMatchObject({ code: 'E_USAGE' });
});
