/**
 * The SGMoE decision rule of docs/DESIGN.md, as pure functions over logits, so the engine, the self-test and the
 * tests share one implementation. Matches the factory's PyTorch reference (float32 there, float64 here: the
 * difference stays far below the self-test tolerance).
 */

export interface Routing {
  threshold: number;
  topK: number;
  baseWeight: number;
}

export function softmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const exps = new Array<number>(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    exps[i] = Math.exp(logits[i] - max);
    sum += exps[i];
  }
  for (let i = 0; i < exps.length; i++) exps[i] /= sum;
  return exps;
}

/** Index of the largest value; ties go to the lowest index, like torch.argmax. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** The k largest entries, largest first; ties go to the lowest index. */
export function topKIndices(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b] - values[a] || a - b)
    .slice(0, k);
}

/** The base branch's verdict: its probabilities, confidence and whether the sample exits early. */
export function baseStage(baseLogits: ArrayLike<number>, threshold: number): { pBase: number[]; confidence: number; earlyExit: boolean } {
  const pBase = softmax(baseLogits);
  const confidence = pBase[argmax(pBase)];
  return { pBase, confidence, earlyExit: confidence >= threshold };
}

/** Which experts run for a sample that did not exit, with their renormalised gate weights. */
export function routeExperts(gateProbs: number[], topK: number): { experts: number[]; weights: number[] } {
  const experts = topKIndices(gateProbs, topK);
  const total = experts.reduce((s, e) => s + gateProbs[e], 0);
  return { experts, weights: experts.map((e) => gateProbs[e] / total) };
}

/** final = w * pBase + (1 - w) * sum_e weight_e * softmax(expert_e logits). */
export function ensemble(pBase: number[], expertLogits: ArrayLike<number>[], weights: number[], baseWeight: number): number[] {
  const final = pBase.map((p) => baseWeight * p);
  expertLogits.forEach((logits, j) => {
    const pExp = softmax(logits);
    for (let i = 0; i < final.length; i++) final[i] += (1 - baseWeight) * weights[j] * pExp[i];
  });
  return final;
}
