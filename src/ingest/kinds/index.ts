import type { InputSpec } from '../../model/manifest';
import type { Frame } from '../frame';
import { Preprocessor, type PreprocessOptions } from '../preprocess';

/** Turns one frame of a source into the trunk's input tensor; bad frames throw an SgmoeError with a bad-input code. */
export interface FramePreparer {
  toTensor(frame: Frame): Promise<Float32Array>;
}

/**
 * Every input kind the node reads, by the manifest's `input.kind` (DESIGN.md, "Tasks and input kinds"): a kind owns
 * its payload parsing and its preprocessing, so adding one is one module and one entry here.
 */
const KINDS: Record<InputSpec['kind'], (spec: InputSpec, options: PreprocessOptions) => FramePreparer> = {
  image: (spec, options) => new Preprocessor(spec, options),
};

export function preparerFor(spec: InputSpec, options: PreprocessOptions = {}): FramePreparer {
  return KINDS[spec.kind](spec, options);
}
