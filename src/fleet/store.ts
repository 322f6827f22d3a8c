import { cp, mkdir, readFile, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';
import { sha256Tree } from '../model/integrity';
import { loadPackage } from '../model/package';
import { FINAL_UPDATE_STEPS as FINAL, UPDATE_STEPS } from '../protocol/update';
import { fsyncDir, writeFileAtomic } from './atomic';
import { StoreLock } from './store-lock';

const errorInfo = z.object({ code: z.string(), message: z.string() });

/** `state.json`: where the last update stands, so a restart can finish or undo it. */
export const updateStateSchema = z.object({
  format: z.literal('sgmoe-update-state/1'),
  step: z.enum(UPDATE_STEPS),
  correlationId: z.string().nullable(),
  version: z.string(),
  sha256: z.string(),
  /** Installed package id (`<name>-<version>`) being brought in, once unpacked. */
  target: z.string().nullable(),
  /** Package id that ran before the swap. */
  previous: z.string().nullable(),
  error: errorInfo.nullable(),
  updatedAt: z.string(),
});
export type UpdateState = z.infer<typeof updateStateSchema>;

/** `current`: the package the device runs, and the ones it ran before, newest first (for rollback). */
const pointerSchema = z.object({ current: z.string(), history: z.array(z.string()) });
export type Pointer = z.infer<typeof pointerSchema>;

/** `digests.json`: the `sha256Tree` of each package when it entered the store (self-tested, or adopted), by id. */
const digestsSchema = z.record(z.string(), z.string());

export interface Recovery {
  /** none: nothing half-done; aborted: an update stopped before its swap was undone; rolled_back: a swap was undone. */
  action: 'none' | 'aborted' | 'rolled_back';
  state: UpdateState | null;
  /** The package directory to run now. */
  currentDir: string | null;
}

export const INTERRUPTED = { code: 'E_UPDATE_INTERRUPTED', message: 'the device restarted during the update' };

/**
 * The device's package folder: `packages/<name>-<version>/` (packages that passed their self-test), `staging/`
 * (being unpacked and self-tested), `downloads/`, the `current` pointer, `digests.json` and `state.json`, every JSON
 * file replaced atomically; `node.lock` while a node runs on it.
 */
export class PackageStore {
  readonly packagesDir: string;
  readonly stagingDir: string;
  readonly downloadsDir: string;
  /** Held by the node that runs on this store, from `recover()` on. */
  readonly lock: StoreLock;
  private readonly pointerPath: string;
  private readonly statePath: string;
  private readonly digestsPath: string;

  constructor(
    readonly root: string,
    /** How many packages to keep installed, the running one included (at least 2, so rollback has somewhere to go). */
    readonly keep = 3,
  ) {
    this.packagesDir = join(root, 'packages');
    this.stagingDir = join(root, 'staging');
    this.downloadsDir = join(root, 'downloads');
    this.pointerPath = join(root, 'current');
    this.statePath = join(root, 'state.json');
    this.digestsPath = join(root, 'digests.json');
    this.lock = new StoreLock(join(root, 'node.lock'));
  }

  async init(): Promise<void> {
    for (const dir of [this.packagesDir, this.stagingDir, this.downloadsDir]) await mkdir(dir, { recursive: true });
  }

  packageDir(id: string): string {
    return join(this.packagesDir, id);
  }

  async pointer(): Promise<Pointer | null> {
    return readJson(this.pointerPath, pointerSchema);
  }

  async currentDir(): Promise<string | null> {
    const p = await this.pointer();
    return p ? this.packageDir(p.current) : null;
  }

  /** First boot: copies the package the device was set up with into the store and makes it current. */
  async adopt(dir: string): Promise<string> {
    await this.init();
    const existing = await this.pointer();
    if (existing) return this.packageDir(existing.current);
    const { manifest } = await loadPackage(dir);
    const id = packageId(manifest.name, manifest.version);
    const temp = join(this.stagingDir, `adopt-${id}`);
    await rm(temp, { recursive: true, force: true });
    try {
      await cp(dir, temp, { recursive: true });
    } catch (err) {
      // A half copy would fill the disk the audit log and the outbox need, again at every restart.
      await rm(temp, { recursive: true, force: true });
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      const [need, free] = [await treeBytes(dir), await freeBytes(this.root)];
      throw new SgmoeError(
        'E_STORAGE_UNWRITABLE',
        `no room to install ${id} in the package store ${this.root}: it takes ${mb(need)}, ${mb(free)} is free there; the store keeps up to ${this.keep} packages (fleet.keep), so give it about ${mb(need * this.keep)}`,
        { root: this.root, need, free },
        { cause: err },
      );
    }
    await this.install(temp, id);
    await writeFileAtomic(this.pointerPath, JSON.stringify({ current: id, history: [] }));
    return this.packageDir(id);
  }

  /**
   * Refuses a staged package when the store keeps another one under its id (the running package or one of its
   * history): a name and version stand for one package. Reads the store only; returns the staged package's digest.
   */
  async admit(stagedDir: string, id: string): Promise<string> {
    const digest = await sha256Tree(stagedDir);
    await this.keeps(id, digest);
    return digest;
  }

  /**
   * Moves a package that passed its self-test from staging to `packages/<id>` (same file system: one rename) and
   * records its digest. A package the pointer names is never replaced: the staged copy of the same files is dropped,
   * other files under its id are refused as in `admit`.
   */
  async install(stagedDir: string, id: string, digest?: string): Promise<string> {
    const files = digest ?? (await sha256Tree(stagedDir));
    const dest = this.packageDir(id);
    if (await this.keeps(id, files)) {
      await rm(stagedDir, { recursive: true, force: true });
    } else {
      await rm(dest, { recursive: true, force: true });
      await rename(stagedDir, dest);
      await fsyncDir(this.packagesDir);
    }
    await writeFileAtomic(this.digestsPath, JSON.stringify({ ...(await this.digests()), [id]: files }));
    return dest;
  }

  /**
   * Checks that `packages/<id>` holds the files it entered the store with, so that one changed on disk is not run.
   * Packages installed before the store recorded digests are checked against their manifest's part hashes only.
   */
  async verify(id: string): Promise<void> {
    const recorded = (await this.digests())[id];
    if (!recorded) return;
    const dir = this.packageDir(id);
    const found = await digestOrNull(dir);
    if (found !== recorded) {
      throw new SgmoeError(
        'E_STORE_CORRUPT',
        `${dir} is not the package ${id} this store installed: its files hash to ${found ?? 'nothing (the folder is missing)'}, ${this.digestsPath} recorded ${recorded}; it is not run. ` +
          'Roll back past it (`sgmoe model rollback`), or publish the package again under a new version',
        { id, recorded, found },
      );
    }
  }

  /** Makes `id` current; the one it replaces heads the history. */
  async setCurrent(id: string): Promise<void> {
    const p = await this.pointer();
    const history = p ? [p.current, ...p.history.filter((h) => h !== id && h !== p.current)] : [];
    await writeFileAtomic(this.pointerPath, JSON.stringify({ current: id, history }));
  }

  /** Goes back to the package that ran before the current one. Returns [from, to]. */
  async revertCurrent(): Promise<{ from: string; to: string }> {
    const p = await this.pointer();
    if (!p || p.history.length === 0) {
      throw new SgmoeError('E_ROLLBACK_NONE', `no earlier package to roll back to: expected one in ${this.pointerPath}'s history, found none`);
    }
    const [to, ...rest] = p.history;
    await writeFileAtomic(this.pointerPath, JSON.stringify({ current: to, history: rest }));
    return { from: p.current, to };
  }

  /** Removes installed packages beyond the newest `keep` (current first, then its history) and leftovers. */
  async prune(): Promise<string[]> {
    const p = await this.pointer();
    if (!p) return [];
    const kept = new Set([p.current, ...p.history].slice(0, Math.max(2, this.keep)));
    const installed = await readdir(this.packagesDir).catch(() => [] as string[]);
    const removed = installed.filter((id) => !kept.has(id));
    for (const id of removed) await rm(this.packageDir(id), { recursive: true, force: true });
    await writeFileAtomic(this.pointerPath, JSON.stringify({ current: p.current, history: p.history.filter((h) => kept.has(h)) }));
    const digests = await this.digests();
    await writeFileAtomic(this.digestsPath, JSON.stringify(Object.fromEntries(Object.entries(digests).filter(([id]) => kept.has(id)))));
    return removed;
  }

  async readState(): Promise<UpdateState | null> {
    return readJson(this.statePath, updateStateSchema);
  }

  async writeState(state: Omit<UpdateState, 'format' | 'updatedAt'>): Promise<UpdateState> {
    const full: UpdateState = { format: 'sgmoe-update-state/1', ...state, updatedAt: new Date().toISOString() };
    await writeFileAtomic(this.statePath, JSON.stringify(full, null, 2));
    return full;
  }

  /** Removes downloads (whole or `.part`) of every package but `keep`'s sha256: no request owns them. */
  async pruneDownloads(keep?: string): Promise<string[]> {
    const files = await readdir(this.downloadsDir).catch(() => [] as string[]);
    const removed = files.filter((f) => !keep || !f.startsWith(`${keep}.`));
    for (const f of removed) await rm(join(this.downloadsDir, f), { recursive: true, force: true });
    return removed;
  }

  async clearStaging(): Promise<void> {
    await rm(this.stagingDir, { recursive: true, force: true });
    await mkdir(this.stagingDir, { recursive: true });
  }

  /**
   * On start, before any engine loads: undoes a half-done update so the device runs a verified package, and
   * removes every download and staged package (no request owns one after a restart). Before the swap, the new package is dropped. From the swap until
   * the end of the health watch, the pointer goes back to the previous package: a restart in that window may
   * well be the new model's fault, so it does not get the benefit of the doubt. The package to run must still hold
   * the files it was installed with (`verify`). The node starting claims the store first: nothing else may change it
   * under a running node.
   */
  async recover(): Promise<Recovery> {
    await this.init();
    await this.lock.acquire();
    await this.pruneDownloads();
    await this.clearStaging();
    const recovery = await this.undo(await this.readState());
    const pointer = await this.pointer();
    if (pointer) await this.verify(pointer.current);
    return recovery;
  }

  private async undo(state: UpdateState | null): Promise<Recovery> {
    if (!state || FINAL.has(state.step)) return { action: 'none', state, currentDir: await this.currentDir() };
    const pointer = await this.pointer();
    if (pointer && state.target === pointer.current && (state.step === 'swapping' || state.step === 'watching')) {
      await this.revertCurrent();
      const next = await this.writeState({ ...state, step: 'rolled_back', error: INTERRUPTED });
      return { action: 'rolled_back', state: next, currentDir: await this.currentDir() };
    }
    if (state.target && state.target !== pointer?.current && !pointer?.history.includes(state.target)) {
      await rm(this.packageDir(state.target), { recursive: true, force: true });
    }
    const next = await this.writeState({ ...state, step: 'failed', error: INTERRUPTED });
    return { action: 'aborted', state: next, currentDir: await this.currentDir() };
  }

  private async digests(): Promise<Record<string, string>> {
    return (await readJson(this.digestsPath, digestsSchema)) ?? {};
  }

  /**
   * Whether the pointer names `id` with the files of `digest` in place (true: keep them) or `install` may put them
   * there (false: not named, or named and its folder gone); throws when it names `id` with other files.
   */
  private async keeps(id: string, digest: string): Promise<boolean> {
    const p = await this.pointer();
    if (!p || ![p.current, ...p.history].includes(id)) return false;
    const dir = this.packageDir(id);
    const recorded = (await this.digests())[id];
    const found = await digestOrNull(dir);
    if (found === digest) return true;
    if (found === null && (recorded === undefined || recorded === digest)) return false;
    const held = found ?? recorded;
    const role = id === p.current ? 'the package it runs' : 'kept to roll back to';
    if (recorded === digest) {
      throw new SgmoeError('E_STORE_CORRUPT', `${dir} (${role}) was changed on disk since it was installed: its files hash to ${held}, ${this.digestsPath} recorded ${recorded}, which this package matches; it is left as it is`, { id, recorded, found: held });
    }
    throw new SgmoeError(
      'E_VERSION_CONFLICT',
      `a different package ${id} is already on this device (${dir}, ${role}): its files hash to ${held}, this package's to ${digest}. ` +
        'A name and version stand for one package: give this one a new version and publish that',
      { id, held, offered: digest },
    );
  }
}

/** A package folder's `sha256Tree`, or null when the folder is missing. */
async function digestOrNull(dir: string): Promise<string | null> {
  try {
    return await sha256Tree(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export function packageId(name: string, version: string): string {
  return `${name}-${version}`;
}

async function readJson<T>(path: string, schema: z.ZodType<T>): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    // Only a missing file means "none yet": on EACCES or EIO, going on would rewrite `current` and lose the history.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SgmoeError('E_FILE_UNREADABLE', `${path} exists but cannot be read: ${errorMessage(err)}; the update agent changes nothing until it can`, { path }, { cause: err });
  }
  try {
    return schema.parse(JSON.parse(text));
  } catch (err) {
    throw new SgmoeError('E_STORE_CORRUPT', `${path} is not what the update agent wrote: ${errorMessage(err)}`, undefined, { cause: err });
  }
}

/** Bytes of the files of a package folder. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
