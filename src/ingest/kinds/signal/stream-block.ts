import { z } from 'zod';
import { SgmoeError } from '../../../errors';
import { deinterleave, type SampleBlock } from './block';

/**
 * A sample block published on MQTT, in one of two encodings (docs/signal-blocks.md):
 *
 * JSON  `{"ts": 1733140000000, "sampleRate": 25600, "channels": 3, "samples": [[x, y, z], ...], "rpm": 1800, "load": 0.5}`
 *       `samples` holds one array per instant (one value per channel); ts (no clock: blocks follow on), rpm and
 *       load are optional.
 * binary (little-endian) a 32-byte header, then float32 samples interleaved by instant:
 *   0  "SGSB"         magic
 *   4  uint8  1       version
 *   5  uint8          channels
 *   6  uint16         flags: bit 0 rpm present, bit 1 load present
 *   8  float64        timestamp of the first sample, epoch ms
 *   16 float64        sample rate, Hz
 *   24 float32        rpm (when flagged)
 *   28 float32        load (when flagged)
 */
export const BINARY_MAGIC = 'SGSB';
export const BINARY_HEADER_BYTES = 32;

const jsonBlockSchema = z.object({
  /** Omitted by a sensor without a clock: its blocks are taken as following on from each other. */
  ts: z.number().optional(),
  sampleRate: z.number().positive(),
  channels: z.number().int().positive(),
  samples: z.array(z.array(z.number().nullable())),
  rpm: z.number().optional(),
  load: z.number().optional(),
});

export function parseStreamBlock(payload: Buffer, what: string): SampleBlock {
  if (payload.length === 0) throw new SgmoeError('E_SIGNAL_EMPTY', `expected a sample block in ${what}, found zero bytes`);
  if (payload.subarray(0, 4).toString('latin1') === BINARY_MAGIC) return parseBinary(payload, what);
  return parseJson(payload, what);
}

function parseBinary(payload: Buffer, what: string): SampleBlock {
  if (payload.length < BINARY_HEADER_BYTES) {
    throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected a ${BINARY_HEADER_BYTES}-byte header in ${what}, found ${payload.length} bytes`);
  }
  const version = payload.readUInt8(4);
  if (version !== 1) throw new SgmoeError('E_SIGNAL_FORMAT', `expected binary block version 1 in ${what}, found ${version}`);
  const channels = payload.readUInt8(5);
  const flags = payload.readUInt16LE(6);
  const body = payload.length - BINARY_HEADER_BYTES;
  if (channels === 0 || body % (4 * channels) !== 0) {
    throw new SgmoeError('E_SIGNAL_TRUNCATED', `expected whole instants of ${channels} float32 values in ${what}, found ${body} bytes of samples`);
  }
  // Copy: the payload's offset in its pool need not be 4-byte aligned.
  const values = new Float32Array(body / 4);
  for (let i = 0; i < values.length; i++) values[i] = payload.readFloatLE(BINARY_HEADER_BYTES + 4 * i);
  return {
    sampleRate: payload.readDoubleLE(16),
    channels,
    samples: deinterleave(values, channels),
    timestamp: payload.readDoubleLE(8),
    tags: { ...(flags & 1 ? { rpm: payload.readFloatLE(24) } : {}), ...(flags & 2 ? { load: payload.readFloatLE(28) } : {}) },
  };
}

function parseJson(payload: Buffer, what: string): SampleBlock {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected a JSON sample block or a binary "${BINARY_MAGIC}" block in ${what}, found ${JSON.stringify(payload.subarray(0, 24).toString('latin1'))}…`);
  }
  const parsed = jsonBlockSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected a sample block {ts, sampleRate, channels, samples} in ${what}: ${problems.join('; ')}`);
  }
  const block = parsed.data;
  const short = block.samples.findIndex((s) => s.length !== block.channels);
  if (short >= 0) {
    throw new SgmoeError('E_SIGNAL_CHANNELS', `expected ${block.channels} values per instant in ${what} as "channels" says, found ${block.samples[short].length} at instant ${short}`);
  }
  // JSON has no NaN: null stands for a missing value and is rejected as one.
  const values = block.samples.flat().map((v) => (v === null ? NaN : v));
  return {
    sampleRate: block.sampleRate,
    channels: block.channels,
    samples: deinterleave(values, block.channels),
    ...(block.ts !== undefined ? { timestamp: block.ts } : {}),
    tags: { ...(block.rpm !== undefined ? { rpm: block.rpm } : {}), ...(block.load !== undefined ? { load: block.load } : {}) },
  };
}
