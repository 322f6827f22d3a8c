import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, sgmoeArgs } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-journal-');
afterAll(() => tmp.cleanup());

/** `sgmoe run --demo --once` with stderr into a file; JOURNAL_STREAM names that file (as systemd names the journal's stream) or another. */
function run(name: string, journal: (st: { dev: bigint; ino: bigint }) => string): string[] {
  const file = join(tmp.path, `${name}.stderr`);
  const fd = openSync(file, 'w');
  try {
    const st = fstatSync(fd, { bigint: true });
    const child = spawnSync(process.execPath, sgmoeArgs('run', '--demo', '--once', '--fps', '0', '--audit', join(tmp.path, `${name}.db`)), {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', fd],
      env: { ...process.env, JOURNAL_STREAM: journal(st), SGMOE_LOG_LEVEL: 'info' },
    });
    expect(child.status).toBe(0);
  } finally {
    closeSync(fd);
  }
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"level":'));
}

describe('logs under systemd', () => {
  it('leads each JSON line with its journald priority when stderr is the journal, and only then', () => {
    const journal = run('journal', (st) => `${st.dev}:${st.ino}`);
    expect(journal.length).toBeGreaterThan(0);
    // info 6, warn 4 (the demo warns that no operator key is configured), error 3.
    const priority: Record<string, string> = { '30': '6', '40': '4', '50': '3' };
    for (const line of journal) {
      const [, shown, level] = /^<(\d)>\{"level":(\d+),/.exec(line) ?? [];
      expect([line.slice(0, 16), shown]).toEqual([line.slice(0, 16), priority[level]]);
    }
    expect(journal.some((l) => l.startsWith('<6>{"level":30,'))).toBe(true);
    const other = run('other', (st) => `${st.dev}:${st.ino + 1n}`);
    expect(other.length).toBeGreaterThan(0);
    for (const line of other) expect(line).toMatch(/^\{"level":\d+,/);
  });
});
