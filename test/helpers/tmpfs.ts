import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './tmp';

/** A real small filesystem: to fill up (a full disk) or remount read-only. Needs root, as in CI. */
export interface Tmpfs {
  path: string;
  /** Writes a file of zeros until the filesystem refuses (ENOSPC); `free()` removes it. */
  fill(): void;
  free(): void;
  readOnly(): void;
  unmount(): void;
}

/** Mounts a tmpfs of `sizeBytes` at `path`, or says why it cannot (not root, no mount). */
function mountTmpfs(path: string, sizeBytes: number): Tmpfs | { unavailable: string } {
  mkdirSync(path, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', path], { stdio: 'pipe' });
  } catch (err) {
    return { unavailable: `cannot mount a tmpfs at ${path} (root is needed): ${(err as Error).message.split('\n')[0]}` };
  }
  const filler = join(path, 'filler');
  return {
    path,
    fill: () => {
      const fd = openSync(filler, 'a');
      const block = Buffer.alloc(4096);
      try {
        for (;;) writeSync(fd, block);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        closeSync(fd);
      }
    },
    free: () => rmSync(filler, { force: true }),
    readOnly: () => execFileSync('mount', ['-o', 'remount,ro', path], { stdio: 'pipe' }),
    unmount: () => execFileSync('umount', ['-l', path], { stdio: 'pipe' }),
  };
}

/** What `tmpfsTests` gives the tests it sets up. */
export interface TmpfsTests {
  /** A fresh temp folder for the tests' other files; the tmpfs is mounted inside it. */
  tmp: string;
  /** The tmpfs, or why none could be mounted. */
  disk: Tmpfs | { unavailable: string };
  /** `it`, or `it.skip` when there is no tmpfs. */
  onTmpfs: jest.It;
}

/**
 * Sets up the tests of a file (or of the describe block it is called in) on a tmpfs of `sizeBytes`, mounted now, so
 * that without one (not root) `onTmpfs` skips them and a warning says which (`what`) and why. After the tests it is
 * unmounted, then its temp folder removed.
 */
export function tmpfsTests(what: string, sizeBytes: number, prefix?: string): TmpfsTests {
  const tmp = tempDir(prefix);
  const disk = mountTmpfs(join(tmp.path, 'disk'), sizeBytes);
  if ('unavailable' in disk) console.warn(`${what} tests skipped: ${disk.unavailable}`);
  afterAll(() => {
    if (!('unavailable' in disk)) disk.unmount();
    tmp.cleanup();
  });
  return { tmp: tmp.path, disk, onTmpfs: 'unavailable' in disk ? it.skip : it };
}
