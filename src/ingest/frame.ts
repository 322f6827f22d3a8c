import { sha256Hex } from '../model/integrity';

/** Pixel layouts a camera SDK may hand over directly (interleaved, 8 bits per channel). */
export type PixelFormat = 'gray' | 'rgb' | 'bgr';

/** Pixels already decoded by the caller. `stride` is the bytes per row (default width * channels). */
export interface RawPixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 3;
  format: PixelFormat;
  stride?: number;
  /** Set by the camera decoders, which already cut the ROI and brought the frame to the model size: neither is applied again. */
  prepared?: boolean;
}

/**
 * One image entering the SDK. Exactly one of `bytes` (an encoded image) or `raw` (decoded pixels) is set.
 * `id` is unique and stable: a hot folder derives it from the file path, live cameras from the source name,
 * the session start and a sequence number.
 */
export interface Frame {
  id: string;
  /** Name of the source that produced the frame (its URI unless renamed). */
  source: string;
  /** Epoch milliseconds when the SDK received the frame. */
  receivedAt: number;
  bytes?: Buffer;
  raw?: RawPixels;
  /** A window of sensor samples, channel-major (signal inputs; see ingest/kinds/signal). */
  samples?: Float32Array;
  meta?: Record<string, unknown>;
}

const digests = new WeakMap<Buffer, string>();

/** The sha256 of a frame's encoded bytes, computed once however many parts ask (the audit row, the dashboard's review). */
export function inputSha256(frame: Frame): string | undefined {
  if (!frame.bytes) return undefined;
  let digest = digests.get(frame.bytes);
  if (digest === undefined) digests.set(frame.bytes, (digest = sha256Hex(frame.bytes)));
  return digest;
}
