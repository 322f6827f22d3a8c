import type { Size } from './geometry';

/** For each output index along one axis: the input indices it covers and their weights (summing to 1). */
function footprints(from: number, to: number): Array<{ start: number; weights: number[] }> {
  const scale = from / to;
  return Array.from({ length: to }, (_, o) => {
    const lo = o * scale;
    const hi = lo + scale;
    const start = Math.floor(lo);
    const weights: number[] = [];
    for (let i = start; i < Math.min(Math.ceil(hi), from); i++) weights.push((Math.min(hi, i + 1) - Math.max(lo, i)) / scale);
    return { start, weights };
  });
}

/**
 * Shrinks interleaved 8-bit pixels by area averaging (each output pixel the mean of its exact footprint, like
 * Pillow's BOX and ffmpeg's `area`); for shrinking only, which is all a DCT-scaled camera frame needs.
 */
export function areaResize(pixels: Buffer, from: Size, to: Size, channels: number): Buffer {
  const xs = footprints(from.width, to.width);
  const ys = footprints(from.height, to.height);
  // Rows first: each input row reduced to the output width, in floats so nothing is rounded twice.
  const rows = new Float32Array(from.height * to.width * channels);
  for (let y = 0; y < from.height; y++) {
    const row = y * from.width * channels;
    for (let x = 0; x < to.width; x++) {
      const { start, weights } = xs[x];
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += pixels[row + (start + k) * channels + c] * weights[k];
        rows[(y * to.width + x) * channels + c] = sum;
      }
    }
  }
  const out = Buffer.allocUnsafe(to.width * to.height * channels);
  const stride = to.width * channels;
  for (let y = 0; y < to.height; y++) {
    const { start, weights } = ys[y];
    for (let i = 0; i < stride; i++) {
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += rows[(start + k) * stride + i] * weights[k];
      out[y * stride + i] = Math.min(255, Math.round(sum));
    }
  }
  return out;
}
