import type { StageTimingsUs } from '../engine/decision';
import type { AuditRecord, AuditStatus } from './record';

/** The one INSERT of the audit log; `toParams` gives its values in this column order. */
export const INSERT_DECISION = `INSERT INTO decisions (
  ts, received_at, frame_id, source, input_sha256, model_name, model_version, status,
  label, label_index, score, expert, early_exit, base_confidence, gate, macs,
  trunk_us, base_us, gate_us, expert_us, total_us, error_code, error_message
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

type SqlValue = string | number | bigint | Buffer | null;

export function toParams(r: AuditRecord): SqlValue[] {
  const head: SqlValue[] = [
    r.ts,
    r.frame.receivedAt ?? null,
    r.frame.frameId,
    r.frame.source ?? null,
    r.frame.inputSha256 ?? null,
    r.model?.name ?? null,
    r.model?.version ?? null,
    r.status,
  ];
  if (r.status !== 'ok') {
    return [...head, null, null, null, null, null, null, null, null, null, null, null, null, null, r.error.code, r.error.message];
  }
  const t = r.timingsUs;
  return [
    ...head,
    r.label,
    r.labelIndex,
    r.score,
    r.expert,
    r.earlyExit ? 1 : 0,
    r.baseConfidence,
    r.gate.length > 0 ? encodeGate(r.gate) : null,
    r.macs,
    Math.round(t.trunk),
    Math.round(t.base),
    Math.round(t.gate),
    Math.round(t.expert),
    Math.round(t.total),
    null,
    null,
  ];
}

/** Gate probabilities as float32: 4 bytes per expert, ample precision for a probability. */
function encodeGate(gate: readonly number[]): Buffer {
  return Buffer.from(Float32Array.from(gate).buffer);
}

function decodeGate(blob: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= blob.length; i += 4) out.push(blob.readFloatLE(i));
  return out;
}

/** A decisions row as read back: what `query` returns and `export` writes. */
export interface AuditRow {
  id: number;
  ts: number;
  receivedAt: number | null;
  frameId: string;
  source: string | null;
  inputSha256: string | null;
  modelName: string | null;
  modelVersion: string | null;
  status: AuditStatus;
  label: string | null;
  labelIndex: number | null;
  score: number | null;
  expert: number | null;
  earlyExit: boolean | null;
  baseConfidence: number | null;
  gate: number[] | null;
  macs: number | null;
  timingsUs: StageTimingsUs | null;
  errorCode: string | null;
  errorMessage: string | null;
}

/** Raw column values as SQLite returns them. */
export interface DecisionColumns {
  id: number;
  ts: number;
  received_at: number | null;
  frame_id: string;
  source: string | null;
  input_sha256: string | null;
  model_name: string | null;
  model_version: string | null;
  status: AuditStatus;
  label: string | null;
  label_index: number | null;
  score: number | null;
  expert: number | null;
  early_exit: number | null;
  base_confidence: number | null;
  gate: Buffer | null;
  macs: number | null;
  trunk_us: number | null;
  base_us: number | null;
  gate_us: number | null;
  expert_us: number | null;
  total_us: number | null;
  error_code: string | null;
  error_message: string | null;
}

export function fromColumns(c: DecisionColumns): AuditRow {
  return {
    id: c.id,
    ts: c.ts,
    receivedAt: c.received_at,
    frameId: c.frame_id,
    source: c.source,
    inputSha256: c.input_sha256,
    modelName: c.model_name,
    modelVersion: c.model_version,
    status: c.status,
    label: c.label,
    labelIndex: c.label_index,
    score: c.score,
    expert: c.expert,
    earlyExit: c.early_exit === null ? null : c.early_exit === 1,
    baseConfidence: c.base_confidence,
    gate: c.gate === null ? null : decodeGate(c.gate),
    macs: c.macs,
    timingsUs:
      c.total_us === null
        ? null
        : { trunk: c.trunk_us ?? 0, base: c.base_us ?? 0, gate: c.gate_us ?? 0, expert: c.expert_us ?? 0, total: c.total_us },
    errorCode: c.error_code,
    errorMessage: c.error_message,
  };
}
