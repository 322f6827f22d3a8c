import type { InferenceSession } from 'onnxruntime-node';
import { SgmoeError } from '../errors';
import { sampleShape, type Manifest } from '../model/manifest';
import type { Task } from './tasks';

type Dim = number | string;

export interface SharedSessions {
  trunk: InferenceSession;
  base: InferenceSession;
  gate: InferenceSession;
}

/** The one input or output of a part that has exactly one, which must carry this name. */
function io(session: InferenceSession, part: string, kind: 'input' | 'output', name: string): readonly Dim[] {
  const list = kind === 'input' ? session.inputMetadata : session.outputMetadata;
  if (list.length !== 1 || list[0].name !== name) {
    throw new SgmoeError(
      'E_SHAPE_MISMATCH',
      `part ${part}: expected one ${kind} named "${name}", found [${list.map((m) => m.name).join(', ')}]`,
      { part },
    );
  }
  return float32Shape(list[0], part, kind);
}

function float32Shape(meta: InferenceSession.ValueMetadata, part: string, kind: string): readonly Dim[] {
  if (!meta.isTensor || meta.type !== 'float32') {
    throw new SgmoeError('E_SHAPE_MISMATCH', `part ${part}: ${kind} "${meta.name}" must be a float32 tensor`, { part });
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
 * Checks at load time that the shared parts fit the manifest, the task and each other: the trunk takes the
 * manifest's input and its features feed base and gate with the same shape; the gate is as wide as the expert
 * count and the base gives the task's outputs. Returns the per-sample feature shape, for `checkExpert`.
 */
export function checkShapes(manifest: Manifest, task: Task, parts: SharedSessions): number[] {
  const { input } = manifest;
  expectShape('trunk', `input "${input.name}"`, io(parts.trunk, 'trunk', 'input', input.name), [null, ...sampleShape(input)]);
  const features = io(parts.trunk, 'trunk', 'output', 'features');
  if (features.length < 2 || features.slice(1).some((d) => typeof d !== 'number')) {
    throw new SgmoeError('E_SHAPE_MISMATCH', `part trunk: output "features" needs fixed sizes after the batch axis, found [${features.join(',')}]`, {
      part: 'trunk',
    });
  }
  const featureShape = features.slice(1) as number[];
  checkBranch('base', parts.base, task, featureShape);
  expectShape('gate', 'input "features"', io(parts.gate, 'gate', 'input', 'features'), [null, ...featureShape]);
  checkGateOutputs(parts.gate, task, manifest.parts.experts.length);
  return featureShape;
}

/** The gate gives `gate_logits` (one per expert) and exactly the other outputs the task reads, one value each. */
function checkGateOutputs(gate: InferenceSession, task: Task, experts: number): void {
  const wanted = ['gate_logits', ...(task.gateOutputs ?? [])];
  const outputs = new Map(gate.outputMetadata.map((m) => [m.name, m]));
  if (outputs.size !== wanted.length || wanted.some((name) => !outputs.has(name))) {
    throw new SgmoeError('E_SHAPE_MISMATCH', `part gate: expected the outputs [${wanted.join(', ')}], found [${[...outputs.keys()].join(', ')}]`, {
      part: 'gate',
    });
  }
  expectShape('gate', 'output "gate_logits"', float32Shape(outputs.get('gate_logits')!, 'gate', 'output'), [null, experts]);
  for (const name of wanted.slice(1)) expectShape('gate', `output "${name}"`, float32Shape(outputs.get(name)!, 'gate', 'output'), [null]);
}

/** An expert takes the trunk's features and gives the task's outputs, like the base. */
export function checkExpert(task: Task, index: number, session: InferenceSession, featureShape: number[]): void {
  checkBranch(`expert ${index}`, session, task, featureShape);
}

function checkBranch(part: string, session: InferenceSession, task: Task, featureShape: number[]): void {
  expectShape(part, 'input "features"', io(session, part, 'input', 'features'), [null, ...featureShape]);
  const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]));
  const wanted = task.branchOutputs.map((o) => o.name);
  if (outputs.size !== wanted.length || wanted.some((name) => !outputs.has(name))) {
    throw new SgmoeError(
      'E_SHAPE_MISMATCH',
      `part ${part}: expected the ${task.name} outputs [${wanted.join(', ')}], found [${[...outputs.keys()].join(', ')}]`,
      { part },
    );
  }
  for (const { name, dims } of task.branchOutputs) {
    expectShape(part, `output "${name}"`, float32Shape(outputs.get(name)!, part, 'output'), [null, ...dims]);
  }
}
