import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Each map cell becomes a CELL x CELL block: an 8x8 map gives a 64x64 PNG of a few hundred bytes. */
const CELL = 8;

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A coarse anomaly map (row-major, rows x cols) as an 8-bit grayscale PNG, brightest where the score is highest
 * (scaled between the map's own finite minimum and maximum; a cell that is no finite number is brightest, where to
 * look). Synchronous, so it joins the result in one outbox commit.
 */
export function heatmapPng(map: ArrayLike<number>, [rows, cols]: readonly [number, number]): Buffer {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < map.length; i++) if (Number.isFinite(map[i])) [lo, hi] = [Math.min(lo, map[i]), Math.max(hi, map[i])];
  const span = hi > lo ? hi - lo : 1;
  const width = cols * CELL;
  const raw = Buffer.alloc((width + 1) * rows * CELL); // each row: filter byte 0, then the pixels
  for (let y = 0; y < rows * CELL; y++) {
    for (let x = 0; x < width; x++) {
      const v = map[Math.floor(y / CELL) * cols + Math.floor(x / CELL)];
      raw[y * (width + 1) + 1 + x] = Number.isFinite(v) ? Math.round((255 * (v - lo)) / span) : 255;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(rows * CELL, 4);
  header.set([8, 0, 0, 0, 0], 8); // 8-bit, grayscale, deflate, no filter, no interlace
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
