import type { Manifest } from '../../model/manifest';
import { argmax, baseStage, ensemble } from '../decide';
import type { BaseVerdict, BranchOutputs, Task, TaskResult } from './task';

interface ClassVerdict extends BaseVerdict {
  pBase: number[];
}

/** Classification (docs/DESIGN.md, "The decision"): softmax confidence of the base exits early; else a weighted ensemble. */
export class ClassificationTask implements Task<ClassVerdict> {
  readonly name = 'classification';
  readonly earlyExitRange = [0, 1.000001] as const; // a hair above 1 = never exit early
  readonly branchOutputs;
  private readonly labels: string[];
  private readonly baseWeight: number;

  constructor(manifest: Manifest) {
    this.labels = manifest.labels;
    this.baseWeight = manifest.routing.ensemble.baseWeight;
    this.branchOutputs = [{ name: 'logits', dims: [manifest.labels.length] }] as const;
  }

  base(outputs: BranchOutputs, threshold: number): ClassVerdict {
    return baseStage(outputs.logits, threshold);
  }

  finish(verdict: ClassVerdict, experts: BranchOutputs[], weights: number[]): TaskResult {
    const probabilities =
      experts.length === 0 ? verdict.pBase : ensemble(verdict.pBase, experts.map((e) => e.logits), weights, this.baseWeight);
    const labelIndex = argmax(probabilities);
    return { labelIndex, label: this.labels[labelIndex], score: probabilities[labelIndex], probabilities };
  }
}
