import { sha256Hex } from '../model/integrity';
import type { Frame, RawPixels } from './frame';
import { rawPipeline } from './preprocess';

/** A raw frame's pixels as a lossless PNG, and the sha256 its audit row, kept file, dashboard and export name it by. */
export interface FramePng {
  bytes: Buffer;
  sha256: string;
}

const made = new WeakMap<RawPixels, Promise<FramePng | undefined>>();

/**
 * The PNG of a raw frame (a camera's decoded pixels, an SDK push), encoded once in sharp's threads however many parts
 * ask (the frame store keeping it, the dashboard holding it for review). It is what stands for the frame wherever
 * bytes are needed: kept, shown, reviewed and exported, so a verdict exports the very picture the model decided on.
 * Undefined for a frame without raw pixels, or pixels no PNG holds (the preprocessing refuses those too).
 */
export function pngOf(frame: Frame): Promise<FramePng | undefined> {
  if (!frame.raw) return Promise.resolve(undefined);
  let png = made.get(frame.raw);
  if (!png) made.set(frame.raw, (png = encode(frame.raw)));
  return png;
}

/**
 * The PNG some part asked for (`pngOf`) while the frame's outcome was announced, or undefined when none did: the node
 * then names it in the frame's audit row. A raw frame nobody keeps or shows is never encoded, and its row names no bytes.
 */
export function askedPng(frame: Frame): Promise<FramePng | undefined> | undefined {
  return frame.raw && made.get(frame.raw);
}

async function encode(raw: RawPixels): Promise<FramePng | undefined> {
  try {
    // The frame was decided at its size: no pixel limit again. Gray stays one channel (sharp would write RGB), so
    // the factory reads a gray camera's frames as gray, as it reads a gray file.
    const image = rawPipeline(raw, Number.POSITIVE_INFINITY);
    const bytes = await (raw.channels === 1 ? image.toColourspace('b-w') : image).png().toBuffer();
    return { bytes, sha256: sha256Hex(bytes) };
  } catch {
    return undefined;
  }
}
