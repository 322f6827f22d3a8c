import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Streams a file through sha256 so large parts never sit whole in memory just to be hashed. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('error', reject)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** sha256 of bytes already in memory (a frame's input), lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * One sha256 over every file under `dir`: a `path NUL sha256` line per file, sorted by path (a link or special file
 * counts by its type). Two folders with the same files give the same digest whatever their mtimes and modes.
 */
export async function sha256Tree(dir: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else lines.push(`${path}\0${entry.isFile() ? await sha256File(join(dir, path)) : 'not a regular file'}\n`);
    }
  };
  await walk('');
  const hash = createHash('sha256');
  for (const line of lines.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) hash.update(line);
  return hash.digest('hex');
}
