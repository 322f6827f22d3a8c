import type { Manifest } from '../../model/manifest';
import type { Frame } from '../frame';
import { Preprocessor, type PreprocessOptions } from '../preprocess';
import type { FrameSource } from '../source';
import { SignalPreprocessor } from './signal/preprocess';
import { SignalWindowSource } from './signal/window-source';

/** Whatever turns one frame into the trunk's input tensor. */
export interface TensorPreparer {
  toTensor(frame: Frame): Promise<Float32Array>;
}

/** One input kind bound to a package's `manifest.input`. */
export interface InputKind {
  /** The trunk input's shape after the batch axis. */
  dims: number[];
  /** One line for `sgmoe model inspect`. */
  describe: string;
  preprocessor(options?: PreprocessOptions): TensorPreparer;
  /** The frames the node decides, from a source's payloads (images as they are, signals cut into windows). */
  frames(payloads: FrameSource): FrameSource;
}

/** The input kind of a package (`manifest.input.kind`, default `image`); the node and engine never ask which. */
export function inputKind(spec: Manifest['input']): InputKind {
  if (spec.kind === 'signal') {
    return {
      dims: [spec.channels, spec.window],
      describe: `signal "${spec.name}": ${spec.channels} channels at ${spec.sampleRate} Hz, windows of ${spec.window} samples every ${spec.hop}, in ${spec.units}`,
      preprocessor: () => new SignalPreprocessor(spec),
      frames: (payloads) => new SignalWindowSource(payloads, spec),
    };
  }
  return {
    dims: [spec.channels, spec.height, spec.width],
    describe: `${spec.name} ${spec.channels}x${spec.height}x${spec.width} ${spec.colorspace}, mean ${spec.mean} std ${spec.std}`,
    preprocessor: (options) => new Preprocessor(spec, options),
    frames: (payloads) => payloads,
  };
}
