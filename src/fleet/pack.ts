import { readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import { SgmoeError } from '../errors';
import { sha256File } from '../model/integrity';
import { parseManifest, type Manifest } from '../model/manifest';
import { loadPackage } from '../model/package';

/** Every entry gets this mtime, so packing the same files twice gives the same bytes (and the same signature). */
export const PACK_MTIME = new Date('2000-01-01T00:00:00Z');

/**
 * Folders of a package that stay on the operator's machine: the factory's baselines (a global model, a dense one) are
 * measured there and read by the benchmarks; no device loads them, and they can be larger than every part together.
 */
export const NOT_SHIPPED = ['baselines'];

export interface PackResult {
  tar: string;
  sha256: string;
  bytes: number;
  entries: number;
  /** Top-level folders of the package left out of the tar (NOT_SHIPPED). */
  leftOut: string[];
  name: string;
  version: string;
}

/** Relative paths of every directory and regular file under `dir`, sorted; links and special files refuse. */
async function listEntries(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  const children = (await readdir(join(dir, prefix), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const child of children) {
    const rel = prefix ? `${prefix}/${child.name}` : child.name;
    if (child.isDirectory()) {
      out.push(`${rel}/`, ...(await listEntries(dir, rel)));
    } else if (child.isFile()) {
      out.push(rel);
    } else {
      throw new SgmoeError('E_PACK_ENTRY', `${join(dir, rel)}: expected only regular files and directories in a package, found a link or special file`);
    }
  }
  return out;
}

/**
 * Packs a package directory into a deterministic tar: the package must load (manifest valid, every part's
 * sha256 right), entries are sorted, every mtime is PACK_MTIME and no owner is recorded; NOT_SHIPPED stays out.
 */
export async function packPackage(dir: string, out: string): Promise<PackResult> {
  const pkg = await loadPackage(dir);
  const all = await listEntries(pkg.dir);
  const shipped = (path: string) => !NOT_SHIPPED.some((folder) => path === `${folder}/` || path.startsWith(`${folder}/`));
  const entries = all.filter(shipped);
  const temp = `${out}.${process.pid}.tmp`;
  try {
    await tar.c({ cwd: pkg.dir, file: temp, portable: true, mtime: PACK_MTIME, noDirRecurse: true, strict: true }, entries);
    await rename(temp, out);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return {
    tar: out,
    sha256: await sha256File(out),
    bytes: (await stat(out)).size,
    entries: entries.length,
    leftOut: NOT_SHIPPED.filter((folder) => all.includes(`${folder}/`)),
    name: pkg.manifest.name,
    version: pkg.manifest.version,
  };
}

/** The manifest inside a package tar, read without unpacking it (for `publish`, which announces the version). */
export async function readTarManifest(tarPath: string): Promise<Manifest> {
  const chunks: Buffer[] = [];
  await tar.t({
    file: tarPath,
    filter: (path) => path === 'manifest.json',
    onReadEntry: (entry) => entry.on('data', (c: Buffer) => chunks.push(c)),
  });
  if (chunks.length === 0) throw new SgmoeError('E_PART_MISSING', `${tarPath}: expected a manifest.json entry, found none`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new SgmoeError('E_MANIFEST_INVALID', `${tarPath}: manifest.json is not JSON: ${(err as Error).message}`);
  }
  return parseManifest(json, `${tarPath}:manifest.json`);
}
