import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, rename, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../errors';
import { sniffFormat } from '../ingest/format';
import { silentLogger, type Logger } from '../log';
import type { FramePng } from '../ingest/raw-png';
import { sha256Hex } from '../model/integrity';

/**
 * The input bytes of frames an operator may review, kept beside the audit log so a verdict can become a training
 * image (`sgmoe audit export --reviewed --as-dataset`). Files are named by the sha256 the audit row already holds
 * (`<sha256>.<format>`), so the row finds its bytes and a repeated frame is kept once. A raw frame (a camera's decoded
 * pixels) has no bytes of its own: it is kept as the lossless PNG made of its pixels (ingest/raw-png), whose sha256
 * its audit row holds, so it is reviewed, exported and trained on as any PNG that arrived as a file. The folder is bounded: beyond
 * `maxFiles` files or `maxBytes` the oldest go. A review moves its frame's file to `reviewed/`, out of eviction's reach (reviews
 * are human-paced, so that folder grows only as fast as people judge frames).
 *
 * Why not the hot folder's done/ files: only one source kind has them, and the node neither owns nor bounds them.
 *
 * An anomalous frame's coarse score map is kept beside it (`<sha256>.map.json`, see ScoreMap), so a restarted
 * dashboard draws its heatmap again.
 *
 * Kept frames are the first thing to go when the disk fills: the audit log and the outbox share it, and the line
 * stops when they cannot write. Below `minFreeBytes` free, the store evicts its oldest frames and keeps no new one
 * until there is room again; when the node finds its disk full, `reclaim` gives up every kept frame, whatever the
 * reserve. Writes go one at a time, so each sees the space the one before it took.
 */
export type KeepFrames = 'none' | 'anomalous' | 'all';

export interface FrameStoreOptions {
  dir: string;
  keep: KeepFrames;
  maxFiles: number;
  /** Bytes of the kept files (not counting reviewed/); beyond it the oldest go too. Default: no limit but maxFiles. */
  maxBytes?: number;
  /** Free space the store leaves on its disk for the audit log and the outbox. Default 0. */
  minFreeBytes?: number;
  logger?: Logger;
}

/** The node's default free-space reserve: kept frames are copies for review, never worth the last of the disk. */
export const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

/** Writes waiting beyond this are given up (counted): a slow disk never builds a backlog of frames in memory. */
const MAX_PENDING_WRITES = 32;

/** The frames folder of an audit database: `frames/` beside it. */
export function framesDirOf(auditFile: string): string {
  return join(dirname(auditFile), 'frames');
}

/** A kept frame's file name: `<sha256>.<format>`. */
const KEPT_NAME = /^[0-9a-f]{64}\.\w+$/;

/**
 * An anomalous frame's coarse score map (row-major, `grid` = [rows, cols]), from which `heatmapPng` draws its heatmap.
 * A file beside the frame rather than a column of its audit row: it then lives exactly as long as the frame it is
 * drawn over (kept by the same policy, evicted and pinned with it, within the same bounds) and costs the audit
 * writer nothing. Its name has two dots, so KEPT_NAME never takes it for a frame: no export copies it as an image.
 */
export interface ScoreMap {
  grid: [number, number];
  map: number[];
}

/** A kept map as read back: JSON wrote a cell that was no finite number as null, NaN again (heatmapPng's brightest). */
const scoreMapSchema = z
  .object({
    grid: z.tuple([z.number().int().positive(), z.number().int().positive()]),
    map: z.array(z.number().nullable().transform((v) => v ?? Number.NaN)),
  })
  .refine((m) => m.map.length === m.grid[0] * m.grid[1]);

/** The score map's file name beside the frame named by `sha256` (or by a kept frame's file name). */
const mapNameOf = (sha256OrName: string) => `${sha256OrName.slice(0, 64)}.map.json`;

const fileOf = (dir: string, sha256: string) => readdirOrEmpty(dir).find((f) => f.startsWith(`${sha256}.`) && KEPT_NAME.test(f));

/**
 * Where a file is written before it is renamed to `name`: dot-named, so neither locateFrame nor a restarted store
 * takes a partial write (a full disk, a kill) for a kept frame.
 */
const partOf = (dir: string, name: string) => join(dir, `.${name}.part`);

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Where a frame's bytes are kept (reviewed first), or null when they were never kept or have been evicted. */
export function locateFrame(dir: string, sha256: string): string | null {
  for (const folder of [join(dir, 'reviewed'), dir]) {
    const file = fileOf(folder, sha256);
    if (file) return join(folder, file);
  }
  return null;
}

/**
 * The score map kept with a frame (reviewed first), or null when none was (a good frame, a row from before maps were
 * kept, a frame evicted) or it is no map.
 */
export function readScoreMap(dir: string, sha256: string): ScoreMap | null {
  const file = [join(dir, 'reviewed'), dir].map((folder) => join(folder, mapNameOf(sha256))).find((f) => existsSync(f));
  try {
    const parsed = file ? scoreMapSchema.safeParse(JSON.parse(readFileSync(file, 'utf8'))) : undefined;
    return parsed?.success ? parsed.data : null;
  } catch {
    return null; // unreadable, or no JSON
  }
}

/**
 * Moves a frame's bytes to `reviewed/` so eviction leaves them, then its score map: a map follows its frame's move,
 * as eviction deletes it only after its frame (so a review racing either never parts the two). Null when the bytes
 * are no longer kept.
 */
export function pinFrame(dir: string, sha256: string): string | null {
  const found = locateFrame(dir, sha256);
  if (!found || dirname(found) === join(dir, 'reviewed')) return found;
  const target = join(dir, 'reviewed', basename(found));
  mkdirSync(dirname(target), { recursive: true });
  try {
    renameSync(found, target);
  } catch {
    return locateFrame(dir, sha256); // evicted (or pinned by another process) meanwhile
  }
  try {
    renameSync(join(dir, mapNameOf(sha256)), join(dir, 'reviewed', mapNameOf(sha256)));
  } catch {
    // None kept with it.
  }
  return target;
}

/**
 * Keeps a reviewed frame's bytes that the store never kept (held in memory by whoever shows the frame) in `reviewed/`,
 * only if they are the bytes the audit row names: null when they are not, or are no file an image tool reads.
 * Written aside and renamed, so an export never copies half a file.
 */
export function keepReviewedBytes(dir: string, sha256: string, bytes: Buffer): string | null {
  const format = sniffFormat(bytes);
  if (!format || sha256Hex(bytes) !== sha256) return null;
  const name = `${sha256}.${format}`;
  const [target, part] = [join(dir, 'reviewed', name), partOf(join(dir, 'reviewed'), name)];
  mkdirSync(dirname(target), { recursive: true });
  try {
    writeFileSync(part, bytes);
    renameSync(part, target);
  } catch (err) {
    rmSync(part, { force: true });
    throw err;
  }
  return target;
}

export class FrameStore {
  /** Kept files with their sizes, oldest first: the eviction order. */
  private readonly files: Array<{ name: string; size: number }>;
  private bytes = 0;
  private readonly known = new Set<string>();
  private readonly pending = new Set<Promise<void>>();
  /** The last write started: the next one waits for it. */
  private tail: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  /** Counted in `skipped`: frames not kept for lack of room (a write backlog or the free-space reserve). */
  readonly counters = { kept: 0, evicted: 0, skipped: 0, failed: 0 };
  /** Set while the disk is below the reserve: said once when it starts and once when it ends. */
  private short = false;

  constructor(private readonly options: FrameStoreOptions) {
    this.log = (options.logger ?? silentLogger).child({ module: 'frame-store' });
    // What an earlier run kept counts against the bound (with its maps), oldest first. The folder itself is made by
    // the first write, so a node that keeps nothing (a classification package) leaves none behind.
    sweepLeftovers(options.dir);
    const sizeOf = (name: string) => statSync(join(options.dir, name), { throwIfNoEntry: false })?.size ?? 0;
    this.files = readdirOrEmpty(options.dir)
      .filter((f) => KEPT_NAME.test(f))
      .map((name) => ({ name, stat: statSync(join(options.dir, name), { throwIfNoEntry: false }) }))
      .sort((a, b) => (a.stat?.mtimeMs ?? 0) - (b.stat?.mtimeMs ?? 0))
      .map(({ name, stat }) => ({ name, size: (stat?.size ?? 0) + sizeOf(mapNameOf(name)) }));
    for (const f of this.files) {
      this.known.add(f.name);
      this.bytes += f.size;
    }
  }

  /**
   * Keeps a decided frame's bytes if the policy asks for it, with `map` (an anomalous frame's score map) beside
   * them; never waits and never throws. Named by the same sha256 of the same bytes as the frame's audit row (hashed
   * only for frames kept).
   */
  offer(bytes: Buffer | undefined, anomalous: boolean, map?: ScoreMap): void {
    if (!this.keeps(anomalous) || !bytes) return;
    const format = sniffFormat(bytes);
    if (!format) return; // raw pixels come through offerPng
    const name = `${sha256Hex(bytes)}.${format}`;
    if (this.known.has(name) || !this.room()) return;
    this.enqueue(Promise.resolve({ name, bytes }), map);
  }

  /**
   * Keeps a raw frame (decoded pixels) as the lossless PNG `encode` makes of it, if the policy asks for it; never waits
   * and never throws. `encode` is called at once, only for a frame kept: the node names that PNG in the frame's audit
   * row, so the kept file is the picture the row, the dashboard and the export stand for. The write waits for the
   * encoding in the store's queue, off the frame's path.
   */
  offerPng(encode: () => Promise<FramePng | undefined>, anomalous: boolean, map?: ScoreMap): void {
    if (!this.keeps(anomalous) || !this.room()) return;
    const png = encode().then((p) => p && { name: `${p.sha256}.png`, bytes: p.bytes });
    this.enqueue(png, map);
  }

  private keeps(anomalous: boolean): boolean {
    const { keep } = this.options;
    return keep === 'all' || (keep === 'anomalous' && anomalous);
  }

  /** Whether one more write may wait; a frame beyond them is given up (counted). */
  private room(): boolean {
    if (this.pending.size < MAX_PENDING_WRITES) return true;
    this.counters.skipped++;
    return false;
  }

  /** Queues the write of `file` (named once known: a PNG once encoded) behind the writes before it. */
  private enqueue(file: Promise<{ name: string; bytes: Buffer } | undefined>, map?: ScoreMap): void {
    const write = this.tail
      .then(() => file)
      .then((f) => {
        if (!f) {
          this.counters.failed++;
          this.log.warn('could not keep a frame for review: its pixels make no PNG');
          return;
        }
        // Repeated bytes (a file dropped in twice, a camera watching a still scene) are kept once.
        if (this.known.has(f.name)) return;
        this.known.add(f.name);
        return this.write(f.name, f.bytes, map);
      })
      .finally(() => this.pending.delete(write));
    this.tail = write.catch(() => undefined); // one write's failure (counted in write) never stops the next
    this.pending.add(write);
  }

  /**
   * Evicts every kept frame but those a review pinned: the node calls it when its audit log or outbox finds the disk
   * full, and they need the room more than review copies do, whatever the reserve (none at all, too). Never throws.
   */
  reclaim(): Promise<void> {
    const done = this.tail.then(() => this.evictAll()).then(
      () => undefined,
      () => undefined,
    );
    this.tail = done;
    return done;
  }

  /** Resolves once every write started so far has landed (the node's stop awaits it). */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private async write(name: string, bytes: Buffer, map?: ScoreMap): Promise<void> {
    const { dir } = this.options;
    let mapText = map && JSON.stringify({ grid: map.grid, map: map.map });
    try {
      // A full or read-only disk must not stop the line: the write fails, is counted and logged, and leaves no file.
      await mkdir(dir, { recursive: true });
      if (!(await this.makeRoom(bytes.length + (mapText?.length ?? 0)))) {
        this.known.delete(name);
        this.counters.skipped++;
        return;
      }
      // The map before its frame, so a review that finds the frame finds its map too (a kill between the two leaves
      // a map without a frame, which the next start sweeps away). Without its map, the frame is still worth keeping.
      if (mapText) {
        await writeAside(dir, mapNameOf(name), mapText).catch(async (err) => {
          mapText = undefined;
          await removeAll(dir, mapNameOf(name));
          this.log.warn({ file: name, err: errorMessage(err) }, 'could not keep a frame\'s score map: no heatmap after a restart');
        });
      }
      await writeAside(dir, name, bytes);
      const size = bytes.length + (mapText?.length ?? 0);
      this.files.push({ name, size });
      this.bytes += size;
      this.counters.kept++;
    } catch (err) {
      await Promise.all([name, mapNameOf(name)].map((n) => removeAll(dir, n)));
      this.known.delete(name);
      this.counters.failed++;
      this.log.warn({ file: name, err: errorMessage(err) }, 'could not keep a frame for review');
      return;
    }
    const maxBytes = this.options.maxBytes ?? Infinity;
    while (this.files.length > this.options.maxFiles || (this.bytes > maxBytes && this.files.length > 0)) await this.evictOldest();
  }

  /**
   * Whether `size` more bytes leave the reserve free, after evicting the oldest frames if that makes it so; when even
   * all of them would not (a disk short of the reserve for other reasons), they stay, and only `reclaim` (on a disk
   * the line can no longer write) gives them up. A disk whose free space cannot be read counts as roomy: the write
   * itself then says whether it was.
   */
  private async makeRoom(size: number): Promise<boolean> {
    const reserve = this.options.minFreeBytes ?? 0;
    if (reserve === 0) return true;
    const disk = await statfs(this.options.dir).catch(() => undefined);
    let lacking = disk ? reserve + size - disk.bavail * disk.bsize : 0;
    if (lacking <= this.bytes) while (lacking > 0 && this.files.length > 0) lacking -= await this.evictOldest();
    if ((lacking > 0) !== this.short) {
      this.short = lacking > 0;
      if (this.short) this.log.warn({ dir: this.options.dir, minFreeBytes: reserve }, 'disk nearly full: no frames kept for review until there is room (the audit log and the outbox come first)');
      else this.log.info({ dir: this.options.dir }, 'room on the disk again: keeping frames for review');
    }
    return lacking <= 0;
  }

  private async evictAll(): Promise<void> {
    const before = this.counters.evicted;
    while (this.files.length > 0) await this.evictOldest();
    const evicted = this.counters.evicted - before;
    if (evicted > 0) this.log.warn({ dir: this.options.dir, evicted }, 'disk full: kept frames evicted to give the audit log and the outbox their room');
  }

  /** Evicts the oldest kept frame and then its map; the bytes freed (0 when a review pinned it meanwhile). */
  private async evictOldest(): Promise<number> {
    const { dir } = this.options;
    const oldest = this.files.shift()!;
    this.known.delete(oldest.name);
    this.bytes -= oldest.size;
    // The frame first, its map only once the frame is gone: a review pinning it meanwhile takes both.
    const evicted = await unlink(join(dir, oldest.name)).then(
      () => true,
      () => false, // pinned by a review meanwhile (moved to reviewed/ with its map): nothing to evict
    );
    if (!evicted) return 0;
    this.counters.evicted++;
    await rm(join(dir, mapNameOf(oldest.name)), { force: true }).catch(() => undefined);
    return oldest.size;
  }
}

/** Removes `dir/name` and its partial write, if any. */
async function removeAll(dir: string, name: string): Promise<void> {
  await Promise.all([partOf(dir, name), join(dir, name)].map((f) => rm(f, { force: true }).catch(() => undefined)));
}

/**
 * What a kill left in the frames folder: partial writes, and maps whose frame never landed (written first) or was
 * deleted by hand.
 */
function sweepLeftovers(dir: string): void {
  const names = readdirOrEmpty(dir);
  const frames = new Set(names.filter((f) => KEPT_NAME.test(f)).map((f) => f.slice(0, 64)));
  for (const f of names) {
    const stray = f.endsWith('.part') || (f.endsWith('.map.json') && !frames.has(f.slice(0, 64)));
    try {
      if (stray) rmSync(join(dir, f), { force: true });
    } catch {
      // Not a file (nothing this store wrote): left alone.
    }
  }
}

/** Writes `data` as `dir/name` whole or not at all: aside under a dot name, then renamed. */
async function writeAside(dir: string, name: string, data: Buffer | string): Promise<void> {
  const part = partOf(dir, name);
  await writeFile(part, data);
  await rename(part, join(dir, name));
}
