import { access, constants, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { extname, basename, join, resolve } from 'node:path';
import { SgmoeError, errorMessage } from '../../errors';
import type { Frame } from '../frame';
import { sleep } from '../retry';
import { BaseSource, QUEUED_DEFAULTS, type SettledBefore, type FrameOutcome, type SourceOptions, type SourceStats } from '../source';

export interface DirSourceOptions extends SourceOptions {
  /** Yield the files there now (once each is stable), then end; for `sgmoe run --once`. */
  once?: boolean;
  /** How often the folder is listed (default 250 ms). */
  pollMs?: number;
  /** A file is taken once its size and mtime have not changed for this long (default 1000 ms). */
  stableMs?: number;
  /** The clock that times stability (default Date.now): tests hold it still while a file grows. */
  clock?: () => number;
  /**
   * A file rejected as cut short (it does not decode) stays in the inbox this long, watched, before it moves to
   * rejected/ (default 10000 ms; 0 with `once`): a writer that resumes after a pause longer than `stableMs` has its
   * finished file taken again.
   */
  rejectAfterMs?: number;
  /**
   * Asked only for the files there at the start: one a kill left between its commit and its move to done/ is moved
   * now, not decided (audited, published) a second time. Such files' frames carry `meta.leftover`, for a signal
   * package to ask of each window.
   */
  settledBefore?: SettledBefore;
}

/** Files being written by convention (hidden, .tmp, .part) are left alone until renamed. */
const IN_PROGRESS = /^\.|\.(tmp|part)$/i;

/** How often a running node looks for a hot folder that is not there (yet). */
const FOLDER_POLL_MS = 1000;

/** What a file cut short gets (its writer paused): such a rejected file is held for `rejectAfterMs`, watched. */
const CUT_SHORT = new Set(['E_FRAME_EMPTY', 'E_FRAME_FORMAT', 'E_FRAME_DECODE', 'E_SIGNAL_EMPTY', 'E_SIGNAL_FORMAT', 'E_SIGNAL_TRUNCATED']);

/** Beside a rejected file: why. */
const REASON = '.reason.txt';
/** The longest file name (bytes, not characters) of Linux filesystems: ext4, tmpfs, most shares. */
const NAME_MAX = 255;
/** Longer "extensions" (`a.<200 characters>`) are part of the name: cut, not kept whole. */
const EXT_MAX = 16;

/**
 * `dir:PATH` hot folder. A file is taken once fully written (size and mtime stable for `stableMs`), and moved
 * to `done/` or `rejected/` (with `<name>.reason.txt`, the name cut if too long for that) only when the frame is
 * settled. A crash before that leaves the file where it was, so it is picked up again after a restart:
 * at-least-once, nothing lost (a file dropped by backpressure, under a `drop-oldest` policy, also stays until the
 * next start). The frame id is the file path and its mtime: stable across restarts, distinct when a camera reuses
 * a file name.
 *
 * A writer that pauses longer than `stableMs` is caught at the latest when the frame settles: a file that changed
 * since it was read is never moved, it is taken again once stable; a rejected file (a half-written image does not
 * decode) is watched for `rejectAfterMs` more before it moves. Writers that can should write `name.tmp` (or a dot
 * file) and rename it when complete: such names are never taken.
 */
export class DirSource extends BaseSource {
  readonly kind = 'dir' as const;
  readonly replays = true;
  readonly path: string;
  private readonly once: boolean;
  private readonly pollMs: number;
  private readonly stableMs: number;
  private readonly clock: () => number;
  private readonly rejectAfterMs: number;
  /** Rejected files watched in the inbox before they move (as read, not their bytes), and since when. */
  private readonly held = new Map<string, { read: Frame['meta']; outcome: FrameOutcome; since: number }>();
  /** While the folder is watched, a cut-short file is held; once the watch ends, it moves at once. */
  private watching = false;
  private readonly settledBefore: DirSourceOptions['settledBefore'];
  /** Files yielded and not yet settled (or dropped, or unreadable): not taken again until a restart. */
  private readonly taken = new Set<string>();
  /** Subfolders and links already reported as left alone. */
  private readonly leftAlone = new Set<string>();
  private alreadyDecided = 0;
  private alreadyRejected = 0;

  constructor(path: string, options: DirSourceOptions = {}) {
    super(`dir:${path}`, options, QUEUED_DEFAULTS);
    this.path = resolve(path);
    this.once = options.once ?? false;
    this.pollMs = options.pollMs ?? 250;
    this.stableMs = options.stableMs ?? 1000;
    this.clock = options.clock ?? Date.now;
    this.rejectAfterMs = options.rejectAfterMs ?? (this.once ? 0 : 10_000);
    this.settledBefore = options.settledBefore;
  }

  override stats(): SourceStats {
    return { ...super.stats(), ...(this.alreadyDecided > 0 && { alreadyDecided: this.alreadyDecided }), ...(this.alreadyRejected > 0 && { alreadyRejected: this.alreadyRejected }) };
  }

  protected async run(signal: AbortSignal): Promise<void> {
    this.watching = true;
    try {
      await this.watch(signal);
    } finally {
      // Stopping, or --once done: the files held so far move now, and those settled from now on at once.
      this.watching = false;
      for (const [name, { read, outcome }] of this.held) await this.move(name, read, outcome);
    }
  }

  private async watch(signal: AbortSignal): Promise<void> {
    if (!(await this.folderReady(signal))) return;
    /** Last size/mtime seen per file and since when it has not changed. */
    const watched = new Map<string, { size: number; mtimeMs: number; since: number }>();
    let remaining: Set<string> | undefined; // --once: the files there at the start
    let leftovers: Set<string> | undefined; // the files there at the start, which an earlier run may have decided
    while (!signal.aborted) {
      const names = await this.list();
      if (!names) {
        // The folder went away (moved, a share unmounted): waited for as at the start, then read again.
        if (!(await this.folderReady(signal))) return;
        continue;
      }
      remaining ??= this.once ? new Set(names) : undefined;
      leftovers ??= new Set(names);
      // One clock reading per listing: files seen together turn stable together, and are taken in name order.
      const now = this.clock();
      await this.settleHeld(now);
      for (const name of names) {
        if (signal.aborted) return;
        if (this.taken.has(name) || (remaining && !remaining.has(name))) continue;
        const st = await stat(join(this.path, name)).catch(() => undefined);
        if (!st) continue; // gone since the listing
        const seen = watched.get(name);
        if (!seen || seen.size !== st.size || seen.mtimeMs !== st.mtimeMs) {
          watched.set(name, { size: st.size, mtimeMs: st.mtimeMs, since: now });
          continue;
        }
        if (now - seen.since < this.stableMs) continue;
        watched.delete(name);
        this.taken.add(name);
        if (await this.take(name, st, leftovers.delete(name))) remaining?.delete(name);
        else this.taken.delete(name); // it grew while read: watched again until stable
      }
      if (remaining) {
        for (const name of remaining) if (!names.includes(name)) remaining.delete(name);
        if (remaining.size === 0) return;
      }
      for (const name of watched.keys()) if (!names.includes(name)) watched.delete(name);
      await sleep(this.pollMs, signal);
    }
  }

  protected override async onSettled(frame: Frame, outcome: FrameOutcome): Promise<void> {
    const name = frame.meta?.file;
    if (typeof name !== 'string' || !this.taken.has(name)) return;
    // Not decided (an SDK consumer that stopped; the node leaves such frames unsettled): taken again, as at a restart.
    if (outcome.status === 'dropped') return void this.taken.delete(name);
    const cutShort = outcome.status === 'rejected' && CUT_SHORT.has(outcome.error.code);
    if (cutShort && this.watching && this.rejectAfterMs > 0) this.held.set(name, { read: frame.meta, outcome, since: this.clock() });
    else await this.move(name, frame.meta, outcome);
  }

  /** Held files watched long enough, changed or gone are settled as `move` says. */
  private async settleHeld(now: number): Promise<void> {
    for (const [name, { read, outcome, since }] of this.held) {
      if (now - since >= this.rejectAfterMs || (await this.changedSinceRead(name, read))) await this.move(name, read, outcome);
    }
  }

  /**
   * Moves a settled file to done/ or rejected/, unless it changed since it was read (then it is taken again) or went
   * (someone took it away: a file of that name that comes later is taken).
   */
  private async move(name: string, read: Frame['meta'], outcome: FrameOutcome): Promise<void> {
    this.held.delete(name);
    const folder = outcome.status === 'decided' ? 'done' : 'rejected';
    try {
      const st = await stat(join(this.path, name)).catch(() => undefined);
      if (st && (st.size !== read?.size || st.mtimeMs !== read?.mtimeMs)) {
        this.taken.delete(name);
        this.log.warn({ file: name }, `${name} changed after it was read (a slow writer): left in the inbox, to be taken again once stable`);
        return;
      }
      // The file went, not its folder (a folder that went is said below, as the move fails).
      if (!st && (await stat(this.path).then(() => true, () => false))) {
        this.taken.delete(name);
        this.log.warn({ file: name }, `${name} went from the inbox before it was moved to ${folder}/`);
        return;
      }
      await makeFolder(join(this.path, folder)); // made again if it went (see makeOutFolders)
      const target = await freeName(join(this.path, folder), name, outcome.status === 'rejected' ? REASON : '');
      // The reason first: a crash between the two leaves the file in the inbox, to be retried.
      if (outcome.status === 'rejected') {
        await writeFile(`${target}${REASON}`, `${outcome.error.code}: ${outcome.error.message}\n`);
      }
      await rename(join(this.path, name), target);
      this.taken.delete(name);
    } catch (err) {
      this.reportError(new SgmoeError('E_SOURCE_IO', `expected to move ${name} to ${folder}/, found: ${errorMessage(err)}`, undefined, { cause: err }));
    }
  }

  /**
   * `--once` handles what is there, so a missing folder ends the source; a running node waits for it (a share
   * mounted after boot, a folder made after the node started, or one moved away and back), said once per wait and
   * counted as an error meanwhile.
   */
  private async folderReady(signal: AbortSignal): Promise<boolean> {
    for (let waiting = false; ; waiting = true) {
      try {
        await this.prepareFolders();
        if (waiting) this.log.info(`${this.path} is there now: taking its files`);
        return true;
      } catch (err) {
        if (this.once || (err as SgmoeError).code !== 'E_SOURCE_NOT_FOUND') throw err;
        if (!waiting) this.reportError(new SgmoeError('E_SOURCE_NOT_FOUND', `${(err as SgmoeError).message}: waiting for it to appear`));
      }
      await sleep(Math.max(this.pollMs, FOLDER_POLL_MS), signal);
      if (signal.aborted) return false;
    }
  }

  private async prepareFolders(): Promise<void> {
    const st = await stat(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new SgmoeError('E_SOURCE_IO', `expected a folder at ${this.path}, but: ${errorMessage(err)}`, undefined, { cause: err });
    });
    if (!st) throw new SgmoeError('E_SOURCE_NOT_FOUND', `expected a folder at ${this.path}, found nothing`);
    if (!st.isDirectory()) throw new SgmoeError('E_SOURCE_IO', `expected a folder at ${this.path}, found a file`);
    await this.makeOutFolders();
  }

  /**
   * done/ and rejected/, made again when they went (a share mounted over the folder after the node made them).
   * Settled files are moved out of the folder into them, so all three must be writable: a read-only folder is
   * refused here, since its files would be decided but never moved, and decided again at every start.
   */
  private async makeOutFolders(): Promise<void> {
    await writable(this.path);
    for (const folder of [join(this.path, 'done'), join(this.path, 'rejected')]) {
      await makeFolder(folder);
      await writable(folder);
    }
  }

  /** Regular files, oldest name first (cameras name files by time); undefined when the folder is gone. */
  private async list(): Promise<string[] | undefined> {
    const entries = await readdir(this.path, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!entries) return undefined;
    for (const e of entries) {
      if (this.leftAlone.has(e.name)) continue;
      // Said once per folder: files copied in with their folder (a data set's class folders) are never taken.
      if (e.isDirectory() && e.name !== 'done' && e.name !== 'rejected') {
        this.leftAlone.add(e.name);
        this.log.warn({ folder: e.name }, `${e.name}/ in ${this.path} is left alone: a hot folder takes the files at its top level only`);
      }
      // Said once per link: a link may point anywhere (outside the folder, nowhere), so it is never followed.
      if (e.isSymbolicLink()) {
        this.leftAlone.add(e.name);
        this.log.warn({ link: e.name }, `${e.name} in ${this.path} is a link, left alone: a hot folder takes regular files only, never what a link points to`);
      }
    }
    return entries
      .filter((e) => e.isFile() && !IN_PROGRESS.test(e.name))
      .map((e) => e.name)
      .sort();
  }

  /**
   * Reads a stable file and queues it (an unreadable one is reported), or moves it to done/ when it is a `leftover`
   * an earlier run decided; false when it grew while read, to be watched again.
   */
  private async take(name: string, st: { size: number; mtimeMs: number }, leftover: boolean): Promise<boolean> {
    const path = join(this.path, name);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      this.reportError(new SgmoeError('E_SOURCE_IO', `expected to read ${path}, found: ${errorMessage(err)}`, undefined, { cause: err }));
      return true;
    }
    if (bytes.length !== st.size) return false;
    const meta = { file: name, path, size: st.size, mtimeMs: st.mtimeMs, ...(leftover && { leftover }) };
    const frame = { id: `${path}@${Math.trunc(st.mtimeMs)}`, source: this.name, receivedAt: Date.now(), bytes, meta };
    const before = leftover ? this.settledBefore?.(frame) : undefined;
    if (before) {
      // Settled as then: a file rejected as cut short is held again (a kill may have cut its hold short), not rejected twice.
      this.log.info({ frameId: frame.id }, `${name} was ${before.status} before the node stopped (its audit row is there): settled as then, not decided again`);
      if (before.status === 'decided') this.alreadyDecided++;
      else this.alreadyRejected++;
      await this.onSettled(frame, before);
      return true;
    }
    await this.emit(frame);
    return true;
  }

  /** Whether the file is no longer what was read: a writer went on after a pause, or it went. */
  private async changedSinceRead(name: string, meta: Frame['meta']): Promise<boolean> {
    const st = await stat(join(this.path, name)).catch(() => undefined);
    return st === undefined || st.size !== meta?.size || st.mtimeMs !== meta?.mtimeMs;
  }
}

/**
 * Makes one folder, never its parents: a hot folder that went away is not made again, empty, under its name (moved
 * back, it would land inside that one).
 */
async function makeFolder(path: string): Promise<void> {
  await mkdir(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

/** Says why the node cannot write in a folder (Node's recursive mkdir would call a read-only one ENOENT). */
async function writable(folder: string): Promise<void> {
  await access(folder, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    const found = err.code === 'EROFS' ? 'it is on a read-only filesystem' : `it is not writable (${err.code ?? errorMessage(err)})`;
    throw new SgmoeError('E_SOURCE_IO', `expected to write in ${folder} (settled files are moved to done/ and rejected/), but ${found}`, undefined, { cause: err });
  });
}

/**
 * `folder/name`, or `folder/stem-N.ext` when a file of that name is already there (names get reused). The stem is
 * cut so that the name followed by `suffix` fits NAME_MAX: a long name whose reason file could not be written would
 * stay in the inbox, rejected again at every start.
 */
async function freeName(folder: string, name: string, suffix: string): Promise<string> {
  const ext = Buffer.byteLength(extname(name)) <= EXT_MAX ? extname(name) : '';
  const stem = basename(name, ext);
  for (let n = 0; ; n++) {
    const tail = `${n === 0 ? '' : `-${n}`}${ext}`;
    const candidate = join(folder, cut(stem, NAME_MAX - Buffer.byteLength(tail + suffix)) + tail);
    if (!(await access(candidate).then(() => true, () => false))) return candidate;
  }
}

/** The longest start of `text` that takes at most `bytes` bytes in UTF-8 (never half a character). */
function cut(text: string, bytes: number): string {
  let out = '';
  let used = 0;
  for (const char of text) {
    used += Buffer.byteLength(char);
    if (used > bytes) break;
    out += char;
  }
  return out;
}

