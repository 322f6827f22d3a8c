import { SgmoeError } from '../../../errors';
import type { Frame } from '../../frame';
import type { SignalSpec } from './spec';
import type { WindowMeta } from './window-source';

/**
 * A window frame -> the trunk's input [channels * window] float32, channel-major. The spectral front-end lives
 * in the trunk graph, so the samples go in as they are, in the package's units. A payload that could not be read
 * arrives here as a frame carrying its error and is rejected with it.
 */
export class SignalPreprocessor {
  constructor(private readonly spec: SignalSpec) {}

  get inputSize(): number {
    return this.spec.channels * this.spec.window;
  }

  async toTensor(frame: Frame): Promise<Float32Array> {
    const meta = frame.meta?.signal as WindowMeta | undefined;
    if (meta?.rejection) throw meta.rejection;
    if (!frame.samples) {
      throw new SgmoeError('E_SIGNAL_FORMAT', `expected a window of samples in frame ${frame.id} (signal sources window their payloads), found ${frame.bytes ? 'encoded bytes' : 'nothing'}`);
    }
    if (frame.samples.length !== this.inputSize) {
      throw new SgmoeError('E_TENSOR_STALE', `frame ${frame.id} holds ${frame.samples.length} samples, the model takes ${this.spec.channels} x ${this.spec.window}`);
    }
    refuseNonFinite(frame.samples, this.spec, frame.id, meta?.offset ?? 0);
    refuseFlat(frame.samples, this.spec, frame.id);
    return frame.samples;
  }
}

/** A sample that is no number (NaN, infinite, a missing CSV value) would make every score of the window NaN. */
function refuseNonFinite(samples: Float32Array, spec: SignalSpec, frameId: string, offset: number): void {
  const bad = samples.findIndex((v) => !Number.isFinite(v));
  if (bad < 0) return;
  const [channel, sample] = [Math.floor(bad / spec.window), offset + (bad % spec.window)];
  throw new SgmoeError('E_SIGNAL_NAN', `expected finite samples in ${frameId}, found ${samples[bad]} at sample ${sample} of channel ${channel}`, { channel, sample });
}

/**
 * A channel that holds one value for a whole window is a dead, disconnected or saturated sensor, not a machine: the
 * model would still name a condition, confidently.
 */
function refuseFlat(samples: Float32Array, spec: SignalSpec, frameId: string): void {
  for (let c = 0; c < spec.channels; c++) {
    const channel = samples.subarray(c * spec.window, (c + 1) * spec.window);
    if (channel.every((v) => v === channel[0])) {
      throw new SgmoeError('E_SIGNAL_FLAT', `expected a varying signal in every channel of ${frameId}, found channel ${c} at ${channel[0]} for all ${spec.window} samples: a dead, disconnected or saturated sensor`, {
        channel: c,
        value: channel[0],
      });
    }
  }
}
