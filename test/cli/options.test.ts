import { join } from 'node:path';
import { AuditWriter, openAuditDb } from '../../src/audit';
import { decided } from '../audit/records';
import { sgmoe, startSgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

describe('bad command-line option values', () => {
  it.each([
    [['model', 'publish', 'pkg.tar', '--broker', 'mqtt://127.0.0.1:1', '--site', 's', '--device', 'd', '--window', 'abc'], '--window'],
    [['infer', '--model', 'models/fashion-sgmoe', '--threshold', '1.5', 'x.png'], '--threshold'],
    [['run', '--dashboard', '99999'], '--dashboard'],
  ])('sgmoe %j exits 1 with a usage message naming %s, never an internal error', (args, option) => {
    const r = sgmoe(...args);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(option);
    expect(r.stderr).toMatch(/expected /);
    expect(r.stderr).not.toContain('E_INTERNAL');
  });
});

describe('output into a pipe that closes early (| head)', () => {
  const tmp = tempDir('sgmoe-epipe-');
  afterAll(() => tmp.cleanup());

  it.each([[['query', '--limit', '100000']], [['export']]])('sgmoe audit %j stops quietly with exit 0 once the reader has gone', async ([command, ...flags]) => {
    const file = join(tmp.path, `${command}.db`);
    const { db } = openAuditDb(file);
    const writer = new AuditWriter(db);
    for (let i = 0; i < 3000; i++) writer.record(decided(i, i % 4));
    writer.close();
    db.close();
    // The reader takes the first chunk and closes its end, as head does after its lines. 3000 rows are far more than
    // a pipe holds (64 KiB), so the command is still writing when the reader goes: it meets EPIPE.
    const child = startSgmoe(['audit', command, '--db', file, ...flags]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.stdout.once('data', () => child.stdout.destroy());
    const status = await new Promise((resolve) => child.on('close', resolve));
    expect([status, stderr]).toEqual([0, '']);
  });
});
