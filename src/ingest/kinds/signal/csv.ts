import { SgmoeError } from '../../../errors';
import type { SampleBlock } from './block';

/**
 * A CSV recording: a header `time,<channel>,...`, then one row per sample, time in seconds. The sample rate is
 * 1 / the median time step (as the factory computes it), rounded to the hertz.
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
    time[i] = Number(cells[0]);
    for (let c = 0; c < channels; c++) samples[c][i] = cells[c + 1].trim() === '' ? NaN : Number(cells[c + 1]);
  });
  const steps = Array.from({ length: rows.length - 1 }, (_, i) => time[i + 1] - time[i]).sort((a, b) => a - b);
  const sampleRate = Math.round(1 / steps[Math.floor(steps.length / 2)]);
  return { sampleRate, channels, samples, tags: {} };
}
