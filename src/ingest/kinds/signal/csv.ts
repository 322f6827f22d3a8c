import { SgmoeError } from '../../../errors';
import type { SampleBlock } from './block';

/**
 * A CSV recording: a header `time,<channel>,...`, then one row per sample, time in seconds, evenly spaced. The sample
 * rate is 1 / the mean time step (as the factory computes it), rounded to the hertz: a time column written to the
 * microsecond (25.6 kHz steps of 39 or 40 us) averages to the true rate, where one step alone would not.
 */
export function parseCsv(bytes: Buffer, what: string): SampleBlock {
  if (bytes.length === 0) throw new SgmoeError('E_SIGNAL_EMPTY', `expected a CSV recording in ${what}, found zero bytes`);
  const lines = bytes.toString('utf8').split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1].trim() === '') lines.pop();
  const header = lines[0].split(',').map((h) => h.trim());
  if (header[0].toLowerCase() !== 'time' || header.length < 2) {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected a CSV header "time,<channel>,..." in ${what}, found ${JSON.stringify(lines[0].slice(0, 60))}`);
  }
  const rows = lines.slice(1);
  if (rows.length < 2) throw new SgmoeError('E_SIGNAL_EMPTY', `expected at least 2 sample rows in ${what}, found ${rows.length}`);
  const channels = header.length - 1;
  const time = new Float64Array(rows.length);
  const samples = Array.from({ length: channels }, () => new Float32Array(rows.length));
  rows.forEach((row, i) => {
    const cells = row.split(',');
    if (cells.length !== header.length) {
      throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected ${header.length} values on line ${i + 2} of ${what}, found ${cells.length}`, { line: i + 2 });
    }
    time[i] = cells[0].trim() === '' ? NaN : Number(cells[0]);
    if (!Number.isFinite(time[i]) || (i > 0 && time[i] <= time[i - 1])) {
      throw new SgmoeError('E_SIGNAL_FORMAT', `expected increasing times in seconds in the time column of ${what}, found ${JSON.stringify(cells[0].slice(0, 40))} on line ${i + 2}`, {
        line: i + 2,
      });
    }
    for (let c = 0; c < channels; c++) samples[c][i] = cells[c + 1].trim() === '' ? NaN : Number(cells[c + 1]);
  });
  const mean = (time[rows.length - 1] - time[0]) / (rows.length - 1);
  // Evenly spaced up to rounding (a microsecond column at 25.6 kHz: 39 or 40 us): a gap would read as another rate.
  const uneven = time.findIndex((t, i) => i > 0 && Math.abs(t - time[i - 1] - mean) > mean / 2);
  if (uneven > 0) {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected evenly spaced times in ${what}, found a step of ${time[uneven] - time[uneven - 1]} s on line ${uneven + 2} (the mean step is ${mean} s)`, {
      line: uneven + 2,
    });
  }
  const sampleRate = Math.round(1 / mean);
  return { sampleRate, channels, samples, tags: {} };
}
