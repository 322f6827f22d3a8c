import { readFileSync, readlinkSync } from 'node:fs';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';

/** Who holds the lock: enough to tell whether that process still lives, and to name it to an operator. */
const ownerSchema = z.object({
  pid: z.number().int(),
  host: z.string(),
  /** The process's start time in clock ticks since boot (Linux): a reused pid is another process. */
  startTicks: z.number().nullable(),
  /** Its pid namespace (a container has its own: a pid there means nothing here) and the boot it ran in (Linux). */
  pidNamespace: z.string().nullable().default(null),
  bootId: z.string().nullable().default(null),
  since: z.string(),
});
export type LockOwner = z.infer<typeof ownerSchema>;

/**
 * A lock file held by the node that runs on a store from its start: `node.lock` in the package store, so what changes
 * the store under a running node (the offline rollback) can refuse; `<audit file>.lock` beside the audit log, so a
 * second node on the same config refuses to start rather than decide the same frames again. No OS lock survives in
 * Node without native code, so the file names its process; a lock whose process is gone (a killed node, or one that
 * exited) is stale.
 */
export class StoreLock {
  /** The lock's absolute path: one store however its path is spelled. */
  private readonly key: string;

  /** `what`: the store, as messages name it. */
  constructor(
    readonly path: string,
    private readonly what = 'package store',
  ) {
    this.key = resolve(path);
  }

  /** The lock of each store path this process holds, so a second node in the same process is refused too. */
  private static readonly heldHere = new Map<string, StoreLock>();

  /** The live process that holds the lock, or null: none, or its process is gone. */
  async holder(): Promise<LockOwner | null> {
    const owner = await this.read();
    return owner && alive(owner) ? owner : null;
  }

  /**
   * Takes the lock for this process (again, for a node restarted in the same process); refuses while another process
   * of this host holds it. One of another host cannot be checked: the node takes it over rather than stay down after
   * its container was recreated under a new host name (the offline rollback, by contrast, refuses on it).
   */
  async acquire(): Promise<void> {
    const other = StoreLock.heldHere.get(this.key);
    if (other && other !== this) {
      throw new SgmoeError('E_STORE_IN_USE', `another node of this process holds this ${this.what} (${this.path}); expected one at a time, stop that one first`);
    }
    for (;;) {
      // Created exclusively when there is none: of two processes starting together, one gets it.
      try {
        await writeFile(this.path, JSON.stringify(thisProcess()), { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const text = await this.readText();
      if (text === null) continue; // gone meanwhile: create it again
      const held = parseOwner(text);
      if (held && isThisProcess(held)) break;
      if (held && alive(held) && checkable(held)) {
        throw new SgmoeError('E_STORE_IN_USE', `another process holds this ${this.what}: ${describeOwner(held, this.path)}; expected one at a time, stop that one first`, { ...held });
      }
      await this.takeOver(text);
    }
    StoreLock.heldHere.set(this.key, this);
  }

  /**
   * Moves a stale lock aside, then creates anew (the loop above). A rename takes exactly the file that is there: when
   * it is no longer the stale one read (another process replaced it first), it is put back, so of two processes
   * replacing one stale lock one holds it and the other finds it held. (A third creating one in the instant between
   * the two renames is not guarded against.)
   */
  private async takeOver(stale: string): Promise<void> {
    const aside = `${this.path}.${process.pid}.stale`;
    try {
      await rename(this.path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if ((await readFile(aside, 'utf8')) !== stale) await link(aside, this.path).catch(() => undefined);
    await rm(aside, { force: true });
  }

  /** Lets the store go, if this lock holds it. */
  async release(): Promise<void> {
    if (StoreLock.heldHere.get(this.key) !== this) return;
    StoreLock.heldHere.delete(this.key);
    const owner = await this.read();
    if (owner && isThisProcess(owner)) await rm(this.path, { force: true });
  }

  private async read(): Promise<LockOwner | null> {
    const text = await this.readText();
    return text === null ? null : parseOwner(text);
  }

  private async readText(): Promise<string | null> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new SgmoeError('E_FILE_UNREADABLE', `${this.path} exists but cannot be read: ${errorMessage(err)}`, { path: this.path }, { cause: err });
    }
  }
}

/** The owner a lock's text names; a damaged lock names none, and must not keep a stopped device from its rollback. */
function parseOwner(text: string): LockOwner | null {
  const owner = ownerSchema.safeParse(safeJson(text));
  return owner.success ? owner.data : null;
}

/** "pid 1234 on host cell-7, since ...", and the way out when the operator knows better. */
export function describeOwner(owner: LockOwner, path: string): string {
  return `pid ${owner.pid} on host ${owner.host}, since ${owner.since} (${path}; if no node runs there, remove that file)`;
}

function thisProcess(): LockOwner {
  return { pid: process.pid, host: hostname(), startTicks: procStat(process.pid)?.startTicks ?? null, pidNamespace: pidNamespace(), bootId: bootId(), since: new Date().toISOString() };
}

function isThisProcess(owner: LockOwner): boolean {
  return owner.pid === process.pid && checkable(owner) && owner.startTicks === (procStat(process.pid)?.startTicks ?? null);
}

/** Whether the lock's pid can be looked up here: written on this host, in this pid namespace (not another container's). */
function checkable(owner: LockOwner): boolean {
  const here = pidNamespace();
  return owner.host === hostname() && (owner.pidNamespace === null || here === null || owner.pidNamespace === here);
}

/**
 * Whether the lock's process still runs. None survives a reboot; one that cannot be checked here (another host,
 * another pid namespace) counts as running.
 */
function alive(owner: LockOwner): boolean {
  const boot = bootId();
  if (owner.host === hostname() && owner.bootId !== null && boot !== null && owner.bootId !== boot) return false;
  if (!checkable(owner)) return true;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(owner.pid);
  // A killed node its parent has not reaped yet (a container's PID 1 that does not reap) holds nothing any more.
  if (stat?.state === 'Z' || stat?.state === 'X') return false;
  const ticks = stat?.startTicks ?? null;
  return owner.startTicks === null || ticks === null || ticks === owner.startTicks;
}

/** Fields 3 (state) and 22 (start time) of /proc/<pid>/stat, after the parenthesised name, which may hold spaces; null off Linux. */
function procStat(pid: number): { state: string; startTicks: number | null } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return { state: fields[0], startTicks: Number.isFinite(ticks) ? ticks : null };
  } catch {
    return null;
  }
}

/** This process's pid namespace ("pid:[4026531836]"), or null off Linux. */
function pidNamespace(): string | null {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return null;
  }
}

/** This boot's id, or null off Linux. */
function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
