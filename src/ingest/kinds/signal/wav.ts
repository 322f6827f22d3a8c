import { WaveFile } from 'wavefile';
import { SgmoeError, errorMessage } from '../../../errors';
import { deinterleave, type SampleBlock } from './block';

interface WavFmt {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
  bitsPerSample: number;
  blockAlign: number;
}

const PCM = 1;
const FLOAT = 3;
const EXTENSIBLE = 0xfffe;

/**
 * A WAV file (PCM 16/24/32-bit, scaled by 2^(bits-1) to [-1, 1), or float32) as a block, the same numbers the
 * factory reads with scipy. Empty, unparseable and truncated files each have their own code.
 */
export function parseWav(bytes: Buffer, what: string): SampleBlock {
  if (bytes.length === 0) throw new SgmoeError('E_SIGNAL_EMPTY', `expected a WAV file in ${what}, found zero bytes`);
  let wav: WaveFile;
  try {
    wav = new WaveFile(bytes);
  } catch (err) {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected a RIFF/WAVE file in ${what}, found ${describe(bytes)} (${errorMessage(err)})`);
  }
  const fmt = wav.fmt as WavFmt;
  const data = wav.data as { chunkSize: number; samples: Uint8Array };
  const float = fmt.audioFormat === FLOAT || (fmt.audioFormat === EXTENSIBLE && wav.bitDepth === '32f');
  const pcm = (fmt.audioFormat === PCM || fmt.audioFormat === EXTENSIBLE) && [16, 24, 32].includes(fmt.bitsPerSample) && !float;
  if (!(pcm || (float && fmt.bitsPerSample === 32))) {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected PCM 16/24/32-bit or float32 samples in ${what}, found format ${fmt.audioFormat} with ${fmt.bitsPerSample} bits`);
  }
  if (data.samples.length < data.chunkSize || data.samples.length % fmt.blockAlign !== 0) {
    throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected ${data.chunkSize} bytes of samples in ${what} as its header says, found ${data.samples.length}`, {
      expected: data.chunkSize,
      found: data.samples.length,
    });
  }
  const values = wav.getSamples(true, Float64Array) as unknown as Float64Array;
  const scale = float ? 1 : 1 / 2 ** (fmt.bitsPerSample - 1);
  return { sampleRate: fmt.sampleRate, channels: fmt.numChannels, samples: deinterleave(values, fmt.numChannels, scale), tags: {} };
}

function describe(bytes: Buffer): string {
  return `${bytes.length} bytes starting ${JSON.stringify(bytes.subarray(0, 4).toString('latin1'))}`;
}
