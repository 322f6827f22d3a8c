import type { InferenceSession } from 'onnxruntime-node';
import { SgmoeError } from '../errors';
import { inputKind } from '../ingest/kinds';
import type { Manifest } from '../model/manifest';

type Dim = number | string;

export interface SharedSessions {
  trunk: InferenceSession;
  base: InferenceSession;
  gate: InferenceSession;
}

function io(session: InferenceSession, part: string, kind: 'input' | 'output', name: string): readonly Dim[] {
  const list = kind === 'input' ? session.inputMetadata : session.outputMetadata;
  if (list.length !== 1 || list[0].name !== name) {
    throw new SgmoeError(
      'E_SHAPE_MISMATCH',
      `part ${part}: expected one ${kind} named "${name}", found [${list.map((m) => m.name).join(', ')}]`,
      { part },
    );
  }
  const meta = list[0];
  if (!meta.isTensor || meta.type !== 'float32') {
    throw new SgmoeError('E_SHAPE_MISMATCH', `part ${part}: ${kind} "${name}" must be a float32 tensor`, { part });
  }
  return meta.shape;
}

/** Symbolic dimensions (dynamic batch, for instance) match anything; numbers must be equal. */
function expectShape(part: string, what: string, actual: readonly Dim[], expected: readonly (number | null)[]): void {
  const fits =
    actual.length === expected.length &&
    expected.every((e, i) => e === null || typeof actual[i] !== 'number' || actual[i] === e);
  if (!fits) {
    const show = (dims: readonly (Dim | null)[]) => `[${dims.map((d) => (d === null || typeof d === 'string' ? 'N' : d)).join(',')}]`;
    throw new SgmoeError('E_SHAPE_MISMATCH', `part ${part}: ${what} has shape ${show(actual)}, expected ${show(expected)}`, {
      part,
      actual,
      expected,
    });
  }
}

/**
 * Checks at load time that the shared parts fit the manifest and each other: the trunk takes the manifest's image
 * and its features feed base and gate with the same shape; the gate is as wide as the expert count and the base
 * logits as wide as the labels. Returns the per-sample feature shape, for `checkExpert`.
 */
export function checkShapes(manifest: Manifest, parts: SharedSessions): number[] {
  const { input, labels } = manifest;
  expectShape('trunk', `input "${input.name}"`, io(parts.trunk, 'trunk', 'input', input.name), [null, ...inputKind(input).dims]);
  const features = io(parts.trunk, 'trunk', 'output', 'features');
  if (features.length < 2 || features.slice(1).some((d) => typeof d !== 'number')) {
    throw new SgmoeError('E_SHAPE_MISMATCH', `part trunk: output "features" needs fixed sizes after the batch axis, found [${features.join(',')}]`, {
      part: 'trunk',
    });
  }
  const featureShape = features.slice(1) as number[];
  checkConsumer('base', parts.base, 'logits', labels.length, featureShape);
  checkConsumer('gate', parts.gate, 'gate_logits', manifest.parts.experts.length, featureShape);
  return featureShape;
}

/** An expert takes the trunk's features and gives one logit per label. */
export function checkExpert(manifest: Manifest, index: number, session: InferenceSession, featureShape: number[]): void {
  checkConsumer(`expert ${index}`, session, 'logits', manifest.labels.length, featureShape);
}

function checkConsumer(part: string, session: InferenceSession, output: string, width: number, featureShape: number[]): void {
  expectShape(part, 'input "features"', io(session, part, 'input', 'features'), [null, ...featureShape]);
  expectShape(part, `output "${output}"`, io(session, part, 'output', output), [null, width]);
}
