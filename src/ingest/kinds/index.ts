import { SgmoeError } from '../../errors';
import type { ManifestInput } from '../../model/manifest';
import type { Frame } from '../frame';
import { Preprocessor, type PreprocessOptions } from '../preprocess';
import type { SettledBefore, FrameSource } from '../source';
import { SignalPreprocessor } from './signal/preprocess';
import { SignalWindowSource } from './signal/window-source';

/** Turns one frame of a source into the trunk's input tensor; bad frames throw an SgmoeError with a bad-input code. */
export interface FramePreparer {
  toTensor(frame: Frame): Promise<Float32Array>;
}

/** What a kind owns: the frames its sources' payloads become, and each frame's tensor. */
interface InputKind<S extends ManifestInput> {
  /** The frames the node decides, from a source's payloads (images as they come, signals cut into windows). */
  frames(payloads: FrameSource, spec: S, options: FramesOptions): FrameSource;
  preparer(spec: S, options: PreprocessOptions): FramePreparer;
  /** One line for `sgmoe model inspect`. */
  describe(spec: S): string;
}

/** Per source, how its payloads become frames. */
export interface FramesOptions {
  /** Signal sources: each sample times this, into the package's units (a sensor read in m/s², mg, or raw counts). */
  gain?: number;
  /** Hot folders: which windows of a recording left in the inbox an earlier run decided (images: the folder asks). */
  settledBefore?: SettledBefore;
}

type Kinds = { [K in ManifestInput['kind']]: InputKind<Extract<ManifestInput, { kind: K }>> };

/**
 * Every input kind the node reads, by the manifest's `input.kind` (docs/DESIGN.md, "Seams"): a kind owns
 * its payload parsing and its preprocessing, so adding one is one module and one entry here.
 */
const KINDS: Kinds = {
  image: {
    frames: (payloads, _spec, options) => {
      if (options.gain !== undefined) throw new SgmoeError('E_CONFIG_INVALID', `source ${payloads.name}: gain scales signal samples; this package reads images`);
      return payloads;
    },
    preparer: (spec, options) => new Preprocessor(spec, options),
    describe: (s) =>
      `${s.name} ${s.channels}x${s.height}x${s.width} ${s.colorspace}, mean ${s.mean} std ${s.std}` +
      (s.roi ? `, ROI ${s.roi.width}x${s.roi.height}+${s.roi.x}+${s.roi.y}` : ''),
  },
  signal: {
    frames: (payloads, spec, options) => new SignalWindowSource(payloads, spec, { gain: options.gain, settledBefore: options.settledBefore }),
    preparer: (spec) => new SignalPreprocessor(spec),
    describe: (s) => `signal "${s.name}": ${s.channels} channels at ${s.sampleRate} Hz, windows of ${s.window} samples every ${s.hop}, in ${s.units}`,
  },
};

function kindOf<S extends ManifestInput>(spec: S): InputKind<S> {
  return KINDS[spec.kind] as unknown as InputKind<S>;
}

export function preparerFor(spec: ManifestInput, options: PreprocessOptions = {}): FramePreparer {
  return kindOf(spec).preparer(spec, options);
}

export function describeInput(spec: ManifestInput): string {
  return kindOf(spec).describe(spec);
}

/** A source's frames as the package's input kind reads them. */
export function framesFor(payloads: FrameSource, spec: ManifestInput, options: FramesOptions = {}): FrameSource {
  return kindOf(spec).frames(payloads, spec, options);
}
