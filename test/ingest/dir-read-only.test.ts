import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirSource, type Frame } from '../../src/ingest';
import { tmpfsTests } from '../helpers/tmpfs';

const { disk, onTmpfs } = tmpfsTests('read-only hot folder', 1024 * 1024, 'sgmoe-dir-ro-');

/** Takes every frame the source yields until it ends or fails; a frame here would be one decided but never moved. */
async function frames(source: DirSource): Promise<Frame[]> {
  const seen: Frame[] = [];
  for await (const frame of source) seen.push(frame);
  return seen;
}

describe('a read-only hot folder (a real read-only mount)', () => {
  beforeAll(() => {
    if ('unavailable' in disk) return;
    for (const name of ['bare', 'prepared']) {
      mkdirSync(join(disk.path, name));
      writeFileSync(join(disk.path, name, 'a.png'), 'not read');
    }
    mkdirSync(join(disk.path, 'prepared', 'done'));
    mkdirSync(join(disk.path, 'prepared', 'rejected'));
    disk.readOnly();
  });

  // Without done/ Node's recursive mkdir called this ENOENT; with it every file was decided, then never moved.
  onTmpfs.each([
    ['without done/', 'bare'],
    ['with done/ and rejected/ there', 'prepared'],
  ])('%s: refused at the start with the cause and the path, no file taken', async (_, name) => {
    if ('unavailable' in disk) return;
    const inbox = join(disk.path, name);
    const errors: string[] = [];
    const source = new DirSource(inbox, { pollMs: 20, stableMs: 60, onError: (e) => errors.push(e.code) });
    await expect(frames(source)).rejects.toMatchObject({
      code: 'E_SOURCE_IO',
      message: `expected to write in ${inbox} (settled files are moved to done/ and rejected/), but it is on a read-only filesystem`,
    });
    expect(errors).toEqual(['E_SOURCE_IO']);
    expect(source.stats()).toMatchObject({ frames: 0, decided: 0 });
    expect(readdirSync(inbox)).toContain('a.png');
  });
});
