import type { DecidedRecord, FailedRecord } from '../../src/audit';
import { decidedRecord, rejectedRecord } from '../../src/audit';
import type { Decision } from '../../src/engine/decision';

export const MODEL = { name: 'fashion-sgmoe', version: '1.0.0' };

/** A decision as the engine would make it: `expert` null means an early exit. */
export function decision(i: number, expert: number | null, experts = 4, model = MODEL): Decision {
  const gate = new Array<number>(experts).fill(0.1 / Math.max(1, experts - 1));
  if (expert !== null) gate[expert] = 0.9;
  return {
    frameId: `f-${i}`,
    labelIndex: i % 10,
    label: `label-${i % 10}`,
    score: 0.75,
    probabilities: [],
    expert,
    experts: expert === null ? [] : [expert],
    gate: expert === null ? [] : gate,
    earlyExit: expert === null,
    baseConfidence: expert === null ? 0.95 : 0.6,
    macs: expert === null ? 1000 : 3000,
    timingsUs: { trunk: 100, base: 50, gate: 5, expert: expert === null ? 0 : 80, total: 100 + (i % 100) },
    providers: { trunk: 'cpu' },
    model,
  };
}

export function decided(i: number, expert: number | null, ts = 1_700_000_000_000 + i, model = MODEL): DecidedRecord {
  return decidedRecord(decision(i, expert, 4, model), { frameId: `f-${i}`, source: 'dir:/in', receivedAt: ts - 5, inputSha256: 'ab'.repeat(32) }, ts);
}

export function rejected(i: number, ts = 1_700_000_000_000 + i): FailedRecord {
  return rejectedRecord({ frameId: `f-${i}`, source: 'dir:/in', receivedAt: ts - 5 }, { code: 'E_FRAME_DECODE', message: 'expected a JPEG, found 12 bytes of text' }, MODEL, ts);
}
