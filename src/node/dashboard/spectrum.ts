/** The amplitude spectrum of one window for the dashboard (display only: the model's own front-end is in its trunk). */

export interface Spectrum {
  sampleRate: number;
  /** Hz between two points, from 0 Hz up to half the sample rate. */
  hzPerPoint: number;
  /** Per channel, the peak amplitude of each group of DFT bins in dB (re 1 unit), `points` values each. */
  db: number[][];
}

/** In-place radix-2 FFT of (re, im); the length must be a power of two. */
function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(step * k);
        const wi = Math.sin(step * k);
        const a = start + k;
        const b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi;
        const ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

/**
 * `samples` is one window, channel-major (`channels` runs of equal length). Each channel: mean removed, Hann
 * window, zero-padded to a power of two, DFT magnitude scaled so a unit sinusoid reads 0 dB, then the peak of
 * each group of bins, so a narrow fault line survives the reduction to `points` values.
 */
export function amplitudeSpectrum(samples: Float32Array, channels: number, sampleRate: number, points = 256): Spectrum {
  const length = samples.length / channels;
  let n = 1;
  while (n < length) n <<= 1;
  const bins = n / 2;
  const group = Math.max(1, Math.ceil(bins / points));
  const db: number[][] = [];
  for (let c = 0; c < channels; c++) {
    const x = samples.subarray(c * length, (c + 1) * length);
    let mean = 0;
    for (const v of x) mean += v;
    mean /= length;
    const re = new Float64Array(n);
    const im = new Float64Array(n);
    let windowSum = 0;
    for (let i = 0; i < length; i++) {
      const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / length);
      re[i] = (x[i] - mean) * w;
      windowSum += w;
    }
    fft(re, im);
    const line: number[] = [];
    for (let start = 0; start < bins; start += group) {
      let peak = 0;
      for (let k = start; k < Math.min(bins, start + group); k++) peak = Math.max(peak, Math.hypot(re[k], im[k]));
      line.push(Math.round(200 * Math.log10((2 * peak) / windowSum + 1e-9)) / 10);
    }
    db.push(line);
  }
  return { sampleRate, hzPerPoint: (group * sampleRate) / n, db };
}
