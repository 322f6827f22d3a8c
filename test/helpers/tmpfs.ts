import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

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
export function mountTmpfs(path: string, sizeBytes: number): Tmpfs | { unavailable: string } {
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
