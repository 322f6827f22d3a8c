import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-audit-kill-');
afterAll(() => tmp.cleanup());

test('every batch reported committed before kill -9 is in the file, and the file passes integrity_check', async () => {
  const file = join(tmp.path, 'audit.db');
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'kill-writer.ts'), file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const reported: number[] = [];
  let pending = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      reported.push(...lines.map(Number));
      // Mid-stream: well after the start, while batches keep coming.
      if (reported.length >= 50) resolve();
    });
  });
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');

  const lastReported = Math.max(...reported);
  // Batches commit in order, at most batchRows (200) rows each.
  expect(reported).toEqual([...reported].sort((a, b) => a - b));
  expect(lastReported).toBeGreaterThanOrEqual(50);
  const db = new Database(file);
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    // Ids start at 1 and each batch's ids are consecutive: all of 1..lastReported must be present.
    const present = db.prepare('SELECT count(*) FROM decisions WHERE id <= ?').pluck().get(lastReported);
    expect(present).toBe(lastReported);
    const frames = db.prepare('SELECT frame_id FROM decisions WHERE id IN (1, ?) ORDER BY id').pluck().all(lastReported);
    expect(frames).toEqual(['f-0', `f-${lastReported - 1}`]);
  } finally {
    db.close();
  }
});
