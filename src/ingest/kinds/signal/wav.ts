import { WaveFile } from 'wavefile';
import { SgmoeError, errorMessage } from '../../../errors';
import { deinterleave, type SampleBlock } from './block';

interface WavFmt {
  audioFormat: number;
  /** WAVE_FORMAT_EXTENSIBLE: the sample format's GUID as four uint32, the first being its format code. */
  subformat: number[];
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
  // An extensible header names the sample format in its sub-format (wavefile reports float32 there as bit depth 32,
  // which getSamples would read as integers).
  const format = fmt.audioFormat === EXTENSIBLE ? fmt.subformat[0] : fmt.audioFormat;
  const float = format === FLOAT && fmt.bitsPerSample === 32;
  const pcm = format === PCM && [16, 24, 32].includes(fmt.bitsPerSample);
  if (!(pcm || float)) {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected PCM 16/24/32-bit or float32 samples in ${what}, found format ${format} with ${fmt.bitsPerSample} bits`);
  }
  // A writer that fills in the header's sizes when it closes the file (as a recorder streaming to disk does) leaves
  // 0 there while it writes, and the file runs on past what its RIFF header covers: say so, rather than call a file
  // of samples empty. Rejected as cut short, it is held.
  const after = bytes.length - 8 - bytes.readUInt32LE(4);
  if (data.chunkSize === 0 && after > 0) {
    throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected a finished WAV in ${what}, found a header giving 0 bytes of samples, and ${after} bytes more than it covers: its writer fills in the header when it closes the file`, {
      expected: 0,
      found: after,
    });
  }
  if (data.samples.length < data.chunkSize || data.samples.length % fmt.blockAlign !== 0) {
    throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected ${data.chunkSize} bytes of samples in ${what} as its header says, found ${data.samples.length}`, {
      expected: data.chunkSize,
      found: data.samples.length,
    });
  }
  const values = float ? float32LE(data.samples) : (wav.getSamples(true, Float64Array) as unknown as Float64Array);
  const scale = float ? 1 : 1 / 2 ** (fmt.bitsPerSample - 1);
  return { sampleRate: fmt.sampleRate, channels: fmt.numChannels, samples: deinterleave(values, fmt.numChannels, scale), tags: {} };
}

function float32LE(bytes: Uint8Array): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float64Array.from({ length: bytes.byteLength / 4 }, (_, i) => view.getFloat32(4 * i, true));
}

function describe(bytes: Buffer): string {
  return `${bytes.length} bytes starting ${JSON.stringify(bytes.subarray(0, 4).toString('latin1'))}`;
}
