import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as tar from 'tar';
import { SgmoeError, errorMessage, type ErrorCode } from '../errors';

export interface UnpackLimits {
  /** Sum of the file sizes the tar declares. */
  maxBytes: number;
  maxFiles: number;
}

export interface UnpackResult {
  files: number;
  bytes: number;
}

/** Why an entry path is unsafe, or null: it must stay inside the destination however it is joined. */
function unsafePath(path: string): string | null {
  if (path.includes('\0')) return 'a NUL byte';
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'an absolute path';
  if (path.includes('\\')) return 'a backslash';
  if (path.split('/').includes('..')) return 'a ".." segment';
  return null;
}

/** The path GNU tar gives a sparse file in PAX form (formats 0.1 and 1.0): the data is a sparse map, not the file. */
const SPARSE_PATH = /(^|\/)GNUSparseFile\.\d+\//;

/**
 * Every entry header of a tar, to `onEntry`, including those node-tar would skip without a word (a GNU sparse
 * file, type S, or any other type it does not extract): they come as they are, for the caller to refuse.
 */
function readHeaders(tarPath: string, onEntry: (entry: tar.ReadEntry) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const parser = new tar.Parser({ strict: true, onReadEntry: onEntry, ondone: () => resolve() });
    parser.on('ignoredEntry', onEntry);
    parser.on('error', reject);
    createReadStream(tarPath).on('error', reject).pipe(parser);
  });
}

/**
 * Extracts a package tar into `dest` only after reading every header: each entry must be a regular file or a
 * directory with a relative path that stays inside `dest`, within the size and file-count limits. One bad entry
 * refuses the whole package (tar would otherwise quietly strip it and extract the rest).
 */
export async function unpackPackage(tarPath: string, dest: string, limits: UnpackLimits): Promise<UnpackResult> {
  let files = 0;
  let bytes = 0;
  let problem: SgmoeError | null = null;
  const refuse = (code: ErrorCode, message: string, details: Record<string, unknown>): void => {
    problem ??= new SgmoeError(code, message, details);
  };
  const check = (entry: tar.ReadEntry): void => {
    const why = unsafePath(entry.path);
    if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'Directory') {
      refuse('E_UNPACK_UNSAFE', `entry ${JSON.stringify(entry.path)} is a ${entry.type}${entry.linkpath ? ` to ${JSON.stringify(entry.linkpath)}` : ''}: expected only regular files and directories`, { entry: entry.path, type: entry.type });
    } else if (SPARSE_PATH.test(entry.path)) {
      refuse('E_UNPACK_UNSAFE', `entry ${JSON.stringify(entry.path)} is a sparse file in PAX form: expected only regular files and directories`, { entry: entry.path, type: 'SparseFile' });
    } else if (why) {
      refuse('E_UNPACK_UNSAFE', `entry ${JSON.stringify(entry.path)} has ${why}: expected a relative path inside the package`, { entry: entry.path });
    } else {
      // Directories count too: a tar of empty folders must not get around the limit.
      files += 1;
      bytes += entry.size ?? 0;
      if (files > limits.maxFiles) refuse('E_UNPACK_LIMIT', `the package holds more than ${limits.maxFiles} entries`, { limit: limits.maxFiles });
      if (bytes > limits.maxBytes) refuse('E_UNPACK_LIMIT', `the package unpacks to more than ${limits.maxBytes} bytes`, { limit: limits.maxBytes });
    }
    entry.resume();
  };
  try {
    await readHeaders(tarPath, check);
  } catch (err) {
    throw new SgmoeError('E_UNPACK_INVALID', `${tarPath} is not a readable tar: ${errorMessage(err)}`, undefined, { cause: err });
  }
  if (problem) throw problem;
  await mkdir(dest, { recursive: true });
  try {
    // No owners and no modes from the tar (no setuid or executable bits from a package): plain files and folders.
    await tar.x({
      file: tarPath,
      cwd: dest,
      strict: true,
      preserveOwner: false,
      onReadEntry: (entry) => {
        entry.mode = entry.type === 'Directory' ? 0o755 : 0o644;
      },
    });
  } catch (err) {
    throw new SgmoeError('E_UNPACK_INVALID', `cannot extract ${tarPath} into ${dest}: ${errorMessage(err)}`, undefined, { cause: err });
  }
  return { files, bytes };
}
