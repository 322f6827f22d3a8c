/** The Fashion-MNIST test split from Debian's dataset-fashion-mnist, for benchmarks that also measure accuracy. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Preprocessor } from '../../src/ingest/preprocess';
import type { InputSpec } from '../../src/model/manifest';

const DIR = '/usr/share/datasets/fashion-mnist';

export interface TestSplit {
  /** 28x28 gray pixels per image. */
  pixels: Buffer[];
  labels: number[];
}

export function loadTestSplit(limit = Infinity): TestSplit {
  let images: Buffer;
  let labels: Buffer;
  try {
    images = gunzipSync(readFileSync(`${DIR}/t10k-images-idx3-ubyte.gz`));
    labels = gunzipSync(readFileSync(`${DIR}/t10k-labels-idx1-ubyte.gz`));
  } catch {
    throw new Error(`Fashion-MNIST not found in ${DIR}: apt-get install dataset-fashion-mnist`);
  }
  const count = Math.min(images.readUInt32BE(4), limit);
  const size = images.readUInt32BE(8) * images.readUInt32BE(12);
  return {
    pixels: Array.from({ length: count }, (_, i) => images.subarray(16 + i * size, 16 + (i + 1) * size)),
    labels: Array.from(labels.subarray(8, 8 + count)),
  };
}

/** Model tensors of the split, made by the SDK's own preprocessing (done once, outside any timing). */
export async function testTensors(spec: InputSpec, split: TestSplit): Promise<Float32Array[]> {
  const pre = new Preprocessor(spec);
  const out: Float32Array[] = [];
  for (const data of split.pixels) out.push(await pre.toTensor({ data, width: 28, height: 28, channels: 1, format: 'gray' }));
  return out;
}
