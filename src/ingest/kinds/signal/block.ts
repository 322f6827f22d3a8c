import { SgmoeError } from '../../../errors';
import type { SignalSpec } from './spec';

/** Samples of one payload (a file, an MQTT message), checked against the package's input. */
export interface SampleBlock {
  sampleRate: number;
  channels: number;
  /** One array per channel, all the same length. */
  samples: Float32Array[];
  /** Epoch milliseconds of the first sample, when the sender gave one (streams); files have none. */
  timestamp?: number;
  /** Operating tags sent with the block (rpm, load). */
  tags: { rpm?: number; load?: number };
}

/** The rate may differ by float rounding (a CSV's time column) but no more. */
const RATE_TOLERANCE = 1e-3;

/**
 * Throws the code of the first thing wrong with a parsed block: rate, channel count or no samples. Samples that are
 * no number (NaN, a gap) are refused window by window (preprocess.ts), so one bad sample costs the windows over it,
 * not a whole recording.
 */
export function checkBlock(block: SampleBlock, spec: SignalSpec, what: string): SampleBlock {
  // Written so that a rate that is no number (NaN) fails too.
  if (!(Math.abs(block.sampleRate - spec.sampleRate) <= RATE_TOLERANCE * spec.sampleRate)) {
    throw new SgmoeError('E_SIGNAL_RATE', `expected ${what} sampled at ${spec.sampleRate} Hz, found ${block.sampleRate} Hz`, {
      expected: spec.sampleRate,
      found: block.sampleRate,
    });
  }
  if (block.channels !== spec.channels) {
    throw new SgmoeError('E_SIGNAL_CHANNELS', `expected ${what} with ${spec.channels} channels, found ${block.channels}`, {
      expected: spec.channels,
      found: block.channels,
    });
  }
  const length = block.samples[0]?.length ?? 0;
  if (length === 0) throw new SgmoeError('E_SIGNAL_EMPTY', `expected samples in ${what}, found none`);
  return block;
}

/** Interleaved frames [s0c0, s0c1, ..., s1c0, ...] -> one array per channel. */
export function deinterleave(values: ArrayLike<number>, channels: number, scale = 1): Float32Array[] {
  const length = Math.floor(values.length / channels);
  const out = Array.from({ length: channels }, () => new Float32Array(length));
  for (let i = 0; i < length; i++) for (let c = 0; c < channels; c++) out[c][i] = values[i * channels + c] * scale;
  return out;
}
