/** Bytes of frames the page shows, at most this much by default: a few hundred camera JPEGs, a few thousand small patches. */
export const DEFAULT_HELD_BYTES = 32 * 1024 * 1024;

/**
 * The encoded bytes of the dashboard's recent frames, in memory, within a byte budget (oldest out first), so an
 * operator can mark a frame the node's frame store did not keep (by default it keeps anomalous frames only: a missed
 * defect, judged good, is exactly one it does not) and the verdict still becomes a training image. Memory, not disk:
 * holding every frame costs no write and no flash wear; a restart forgets them (`audit.frames.keep: all` keeps them
 * on disk instead).
 */
export class HeldFrames {
  private readonly held = new Map<number, Buffer>();
  private bytes = 0;

  constructor(readonly maxBytes = DEFAULT_HELD_BYTES) {}

  hold(seq: number, bytes: Buffer): void {
    if (bytes.length > this.maxBytes) return;
    // A view into a larger buffer (a stream's chunk, the small-buffer pool) would keep all of it alive: hold a copy
    // of the frame alone, in memory of its own (Buffer.from would take a slice of the pool again).
    const own = bytes.byteOffset === 0 && bytes.length === bytes.buffer.byteLength ? bytes : copyOf(bytes);
    this.held.set(seq, own);
    this.bytes += own.length;
    for (const [oldest, b] of this.held) {
      if (this.bytes <= this.maxBytes) break;
      this.held.delete(oldest);
      this.bytes -= b.length;
    }
  }

  get(seq: number): Buffer | undefined {
    return this.held.get(seq);
  }

  release(seq: number): void {
    const b = this.held.get(seq);
    if (!b) return;
    this.held.delete(seq);
    this.bytes -= b.length;
  }

  clear(): void {
    this.held.clear();
    this.bytes = 0;
  }
}

function copyOf(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}
