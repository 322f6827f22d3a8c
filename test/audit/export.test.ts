import type { Database } from 'better-sqlite3';
import { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AuditWriter, openAuditDb, queryDecisions, type AuditFilter, type AuditRow, type QueryOptions } from '../../src/audit';
import { WAL_LIMIT_BYTES } from '../../src/audit/wal';
import { register } from '../../src/cli/commands/audit';
import { tempDir } from '../helpers/tmp';
import { decided } from './records';

const tmp = tempDir('sgmoe-audit-export-');
afterAll(() => tmp.cleanup());

const walBytes = (db: string) => (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);

/** A consumer that nobody reads, like a full pipe: it takes chunks into its buffer but finishes none until released. */
class StalledPipe extends Writable {
  readonly chunks: Buffer[] = [];
  /** Resolves at the first chunk the export writes. */
  readonly started: Promise<void>;
  private onStart!: () => void;
  private held: Array<() => void> = [];
  private released = false;

  constructor() {
    super({ highWaterMark: 16 * 1024 });
    this.started = new Promise((resolve) => (this.onStart = resolve));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk);
    this.onStart();
    if (this.released) done();
    else this.held.push(done);
  }

  release(): void {
    this.released = true;
    for (const done of this.held.splice(0)) done();
  }
}

/** The node's own connection and writer on a fresh audit log holding `rows` decisions. */
function nodeLog(name: string, rows: number): { file: string; db: Database; writer: AuditWriter } {
  const file = join(tmp.path, name);
  const { db } = openAuditDb(file);
  const writer = new AuditWriter(db);
  for (let i = 0; i < rows; i += 1000) writer.commitNow(Array.from({ length: Math.min(1000, rows - i) }, (_, j) => decided(i + j, (i + j) % 4)));
  return { file, db, writer };
}

test('a stalled `audit export` does not hold checkpoints back: the node\'s write-ahead log is checkpointed whole and stays within its limit', async () => {
  const { file, db, writer } = nodeLog('stalled.db', 5000);
  const before = queryDecisions(db, {});
  const pipe = new StalledPipe();
  const program = new Command('sgmoe').exitOverride();
  register(program, pipe);
  const exporting = program.parseAsync(['node', 'sgmoe', 'audit', 'export', '--db', file, '--format', 'jsonl']);
  let released = false;
  try {
    await pipe.started;
    expect(pipe.writableNeedDrain).toBe(true); // the export waits for the pipe, with most rows still to go
    expect(pipe.chunks.length).toBeLessThan(before.length);

    // Meanwhile the node goes on: 10,000 more rows, about 2 MiB of log, in its usual batches.
    for (let i = 5000; i < 15_000; i += 500) writer.commitNow(Array.from({ length: 500 }, (_, j) => decided(i + j, (i + j) % 4)));
    const [checkpoint] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    expect(checkpoint.checkpointed).toBe(checkpoint.log);
    writer.commitNow([decided(15_000, 0)]);
    expect(walBytes(file)).toBeLessThanOrEqual(WAL_LIMIT_BYTES);

    pipe.release();
    released = true;
    await exporting;
  } finally {
    if (!released) {
      pipe.release();
      await exporting;
    }
    writer.close();
    db.close();
  }
  // The rows the log held when the export began, each once, in order; those written during it are left out.
  const exported = Buffer.concat(pipe.chunks).toString().trimEnd().split('\n').map((l) => JSON.parse(l) as AuditRow);
  expect(exported).toEqual(before);
});

test('queries read page by page give what one statement gives: filters, limits and both orders across page boundaries', () => {
  const { db, writer } = nodeLog('paged.db', 9000);
  try {
    const ids = (sql: string) => db.prepare(sql).pluck().all() as number[];
    const got = (filter: AuditFilter, options?: QueryOptions) => queryDecisions(db, filter, options).map((r) => r.id);
    expect(got({})).toEqual(ids('SELECT id FROM decisions ORDER BY id'));
    expect(got({}, { order: 'desc' })).toEqual(ids('SELECT id FROM decisions ORDER BY id DESC'));
    expect(got({}, { limit: 4500 })).toEqual(ids('SELECT id FROM decisions ORDER BY id LIMIT 4500'));
    expect(got({}, { order: 'desc', limit: 4001 })).toEqual(ids('SELECT id FROM decisions ORDER BY id DESC LIMIT 4001'));
    expect(got({ expert: 3 }, { limit: 2001 })).toEqual(ids('SELECT id FROM decisions WHERE expert = 3 ORDER BY id LIMIT 2001'));
    expect(got({ label: 'label-7' }, { order: 'desc' })).toEqual(ids("SELECT id FROM decisions WHERE label = 'label-7' ORDER BY id DESC"));
    expect(got({ label: 'no such label' })).toEqual([]);
  } finally {
    writer.close();
    db.close();
  }
});
