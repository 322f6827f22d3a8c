import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirSource, type Frame } from '../../src/ingest';
import { tempDir } from '../helpers/tmp';
import { mountTmpfs } from '../helpers/tmpfs';

const tmp = tempDir('sgmoe-dir-ro-');
const root = join(tmp.path, 'read-only');
const disk = mountTmpfs(root, 1024 * 1024);
const onTmpfs = 'unavailable' in disk ? it.skip : it;
if ('unavailable' in disk) console.warn(`read-only hot folder tests skipped: ${disk.unavailable}`);

afterAll(() => {
  if (!('unavailable' in disk)) disk.unmount();
  tmp.cleanup();
});

/** Takes every frame the source yields until it ends or fails; a frame here would be one decided but never moved. */
async function frames(source: DirSource): Promise<Frame[]> {
  const seen: Frame[] = [];
  for await (const frame of source) seen.push(frame);
  return seen;
}

describe('a read-only hot folder (a real read-only mount)', () => {
  const bare = join(root, 'bare');
  const prepared = join(root, 'prepared');
  beforeAll(() => {
    if ('unavailable' in disk) return;
    for (const inbox of [bare, prepared]) {
      mkdirSync(inbox);
      writeFileSync(join(inbox, 'a.png'), 'not read');
    }
    mkdirSync(join(prepared, 'done'));
    mkdirSync(join(prepared, 'rejected'));
    disk.readOnly();
  });

  // Without done/ Node's recursive mkdir called this ENOENT; with it every file was decided, then never moved.
  onTmpfs.each([
    ['without done/', bare],
    ['with done/ and rejected/ there', prepared],
  ])('%s: refused at the start with the cause and the path, no file taken', async (_, inbox) => {
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
