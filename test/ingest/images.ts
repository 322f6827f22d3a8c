/** Test images made on the spot with sharp (and one PNG header crafted by hand). */
import sharp, { type Sharp } from 'sharp';
import { crc32, deflateSync } from 'node:zlib';
import type { InputSpec } from '../../src/model/manifest';

export const GRAY_28: InputSpec = {
  kind: 'image', name: 'image', channels: 1, height: 28, width: 28, colorspace: 'gray',
  mean: [0.286], std: [0.353], layout: 'NCHW', invert: false,
};

export const RGB_32: InputSpec = {
  kind: 'image', name: 'image', channels: 3, height: 32, width: 32, colorspace: 'rgb',
  mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], layout: 'NCHW', invert: false,
};

/** Gray pixels from a function of (x, y), as a raw buffer. */
export function grayPixels(width: number, height: number, value: (x: number, y: number) => number): Buffer {
  const data = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = value(x, y);
  return data;
}

/** RGB pixels from a function of (x, y) giving [r, g, b]. */
export function rgbPixels(width: number, height: number, value: (x: number, y: number) => [number, number, number]): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(value(x, y), (y * width + x) * 3);
  return data;
}

export function encodeGray(data: Buffer, width: number, height: number): Sharp {
  return sharp(data, { raw: { width, height, channels: 1 } });
}

export function encodeRgb(data: Buffer, width: number, height: number): Sharp {
  return sharp(data, { raw: { width, height, channels: 3 } });
}

/** The normalised value the model expects for a uint8 pixel (reference computed independently, in float64). */
export const expected = (v: number, mean: number, std: number): number => (v / 255 - mean) / std;

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
  return out;
}

/** A valid-looking gray PNG whose header declares width x height, with only one row of pixel data. */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit gray, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1 + Math.min(width, 1024)))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
