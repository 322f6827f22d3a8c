/**
 * Audit log throughput: sustained records/s through the batched writer against one autocommitted INSERT
 * per row (the naive baseline) and against one INSERT call per row inside the same transactions (the writer before
 * its multi-row INSERT), on the same file settings (WAL, synchronous=NORMAL); and what the inference loop pays per
 * record: the hand-over (`record()`), the naive INSERT, and the event-loop time of each flush. The disk and the
 * machine vary from second to second, so the two transactional cases alternate over BENCH_ROUNDS rounds (default 3)
 * and their medians are compared.
 *
 *   npx tsx scripts/bench/audit.ts [records]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditWriter, decidedRecord, openAuditDb, type AuditRecord } from '../../src/audit';
import { INSERT_DECISION, toParams } from '../../src/audit/rows';
import type { Decision } from '../../src/engine/decision';
import { median, percentile, printComparison, printHeader } from './lib';

const RECORDS = Number(process.argv[2] ?? 500_000);
const NAIVE_RECORDS = Math.min(RECORDS, 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Rows per transaction, and records handed over per turn of the event loop: each turn then ends in one flush. */
const BATCH = 1000;

function records(count: number): AuditRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const expert = i % 5 === 4 ? null : i % 4;
    const d: Decision = {
      frameId: `frame-${i}`,
      labelIndex: i % 10,
      label: `label-${i % 10}`,
      score: 0.8,
      probabilities: [],
      expert,
      experts: expert === null ? [] : [expert],
      gate: expert === null ? [] : [0.7, 0.1, 0.1, 0.1],
      earlyExit: expert === null,
      baseConfidence: 0.6,
      macs: 123_456,
      timingsUs: { trunk: 310, base: 120, gate: 8, expert: 95, total: 540 },
      providers: { trunk: 'cpu' },
      model: { name: 'fashion-sgmoe', version: '1.0.0' },
    };
    return decidedRecord(d, { frameId: d.frameId, source: 'dir:/in', receivedAt: Date.now(), inputSha256: 'ab'.repeat(32) });
  });
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/**
 * Hands `count` records over in bursts. With `timed`, each record() call and each event-loop turn is
 * timed (a separate run, so the timers do not slow the throughput figure).
 */
async function batched(file: string, pool: AuditRecord[], count: number, timed: boolean) {
  const { db } = openAuditDb(file);
  const writer = new AuditWriter(db, { batchRows: BATCH, maxBuffered: 1_000_000 });
  const handOverUs: number[] = [];
  const stallUs: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; ) {
    const end = Math.min(count, i + BATCH);
    if (timed) {
      for (; i < end; i++) {
        const s = process.hrtime.bigint();
        writer.record(pool[i % pool.length]);
        handOverUs.push(Number(process.hrtime.bigint() - s) / 1000);
      }
    } else {
      for (; i < end; i++) writer.record(pool[i % pool.length]);
    }
    // The batch flush runs here, on the event loop: this is how long the loop is held.
    const s = process.hrtime.bigint();
    await nextTurn();
    if (timed) stallUs.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  writer.close();
  const elapsed = seconds(t0);
  const { written, overflow, failed } = writer.counters;
  db.close();
  return { rate: written / elapsed, handOverUs, stallUs, written, overflow, failed };
}

/** The same transactions of BATCH rows, with one INSERT call per row. */
function rowByRow(file: string, pool: AuditRecord[], count: number): number {
  const { db } = openAuditDb(file);
  const insert = db.prepare(INSERT_DECISION);
  const write = db.transaction((start: number, end: number) => {
    for (let i = start; i < end; i++) insert.run(toParams(pool[i % pool.length]));
  });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i += BATCH) write(i, Math.min(count, i + BATCH));
  const rate = count / seconds(t0);
  db.close();
  return rate;
}

function naive(dir: string, pool: AuditRecord[]) {
  const { db } = openAuditDb(join(dir, 'naive.db'));
  const insert = db.prepare(INSERT_DECISION);
  const insertUs: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < NAIVE_RECORDS; i++) {
    const s = process.hrtime.bigint();
    insert.run(toParams(pool[i % pool.length]));
    insertUs.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  const rate = NAIVE_RECORDS / seconds(t0);
  db.close();
  return { rate, insertUs };
}

async function main(): Promise<void> {
  printHeader('audit log: batched writer vs one autocommitted INSERT per row', {
    records: String(RECORDS),
    'naive records': String(NAIVE_RECORDS),
    rounds: String(ROUNDS),
    batchRows: String(BATCH),
  });
  const dir = mkdtempSync(join(tmpdir(), 'sgmoe-bench-audit-'));
  try {
    const pool = records(10_000);
    console.error('naive: one autocommitted INSERT per row ...');
    const n = naive(dir, pool);
    const rates = { rowByRow: [] as number[], batched: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      console.error(`round ${round + 1}: one INSERT call per row, then the batched writer ...`);
      rates.rowByRow.push(rowByRow(join(dir, `rows-${round}.db`), pool, RECORDS));
      const b = await batched(join(dir, `batched-${round}.db`), pool, RECORDS, false);
      if (b.written !== RECORDS) throw new Error(`batched writer wrote ${b.written} of ${RECORDS} (overflow ${b.overflow}, failed ${b.failed})`);
      rates.batched.push(b.rate);
      rmSync(join(dir, `rows-${round}.db`), { force: true });
      rmSync(join(dir, `batched-${round}.db`), { force: true });
    }
    const spread = (v: number[]) => `${RECORDS} rows per round; rounds ${v.map((x) => Math.round(x / 1000)).join(', ')}k`;
    console.error('batched writer, each call timed ...');
    const timed = await batched(join(dir, 'timed.db'), pool, NAIVE_RECORDS * 4, true);

    printComparison(
      `sustained records per second (WAL, synchronous=NORMAL; transactions of ${BATCH} rows: median of ${ROUNDS} rounds)`,
      [
        { name: 'naive autocommit INSERT', value: n.rate, unit: 'rec/s', note: `${NAIVE_RECORDS} rows, once` },
        { name: 'one INSERT call per row', value: median(rates.rowByRow), unit: 'rec/s', note: spread(rates.rowByRow) },
        { name: 'batched writer', value: median(rates.batched), unit: 'rec/s', note: spread(rates.batched) },
      ],
      'naive autocommit INSERT',
      true,
    );
    printComparison(
      'time the inference loop spends per record (p99)',
      [
        { name: 'naive INSERT in the loop', value: percentile(n.insertUs, 99), unit: 'µs', note: `p50 ${percentile(n.insertUs, 50).toFixed(2)} µs` },
        { name: 'record() hand-over', value: percentile(timed.handOverUs, 99), unit: 'µs', note: `p50 ${percentile(timed.handOverUs, 50).toFixed(2)} µs, max ${percentile(timed.handOverUs, 100).toFixed(1)} µs` },
        {
          name: 'event-loop time per flush',
          value: percentile(timed.stallUs, 99),
          unit: 'µs',
          note: `${BATCH} rows; p50 ${percentile(timed.stallUs, 50).toFixed(0)} µs`,
        },
      ],
      'naive INSERT in the loop',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
