import sharp from 'sharp';
import type { RawPixels } from '../../ingest/frame';
import { DEFAULT_MAX_PIXELS, rawPipeline } from '../../ingest/preprocess';

/** Longest side of a thumbnail, in pixels. */
export const THUMBNAIL_SIZE = 64;

/** The frame (encoded and auto-oriented, or a camera's decoded pixels) fitted inside THUMBNAIL_SIZE², as a PNG data URL. */
export async function thumbnailOf(image: Buffer | RawPixels): Promise<string> {
  const png = await (Buffer.isBuffer(image) ? sharp(image, { limitInputPixels: DEFAULT_MAX_PIXELS }).rotate() : rawPipeline(image, DEFAULT_MAX_PIXELS))
    .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside' })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

interface Job {
  image: Buffer | RawPixels;
  done: (dataUrl: string | null) => void;
}

/**
 * Makes thumbnails one at a time, off the node's path: a request only queues the frame's bytes (or pixels). Newest first,
 * since the page shows the latest frames; beyond `maxWaiting` the oldest waiting request is given up (null), so
 * a fast camera never builds a backlog or holds many frames in memory.
 */
export class ThumbnailWorker {
  private waiting: Job[] = [];
  private busy = false;
  private closed = false;

  constructor(private readonly maxWaiting = 32) {}

  request(image: Buffer | RawPixels, done: (dataUrl: string | null) => void): void {
    if (this.closed) return done(null);
    this.waiting.push({ image, done });
    if (this.waiting.length > this.maxWaiting) this.waiting.shift()!.done(null);
    void this.next();
  }

  /** Gives up what waits; the thumbnail in progress still lands. */
  close(): void {
    this.closed = true;
    for (const job of this.waiting) job.done(null);
    this.waiting = [];
  }

  private async next(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    for (let job = this.waiting.pop(); job; job = this.waiting.pop()) {
      // A frame sharp cannot decode (the node rejected it too) simply has no thumbnail.
      job.done(await thumbnailOf(job.image).catch(() => null));
    }
    this.busy = false;
  }
}
