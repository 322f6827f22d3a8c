import type { StageTimingsUs } from '../engine/decision';
import type { AuditRecord, AuditStatus } from './record';

/** The decisions table's columns, each with the `toParams` key that fills it: one list, so no statement can bind a
 * value to the wrong column. */
const COLUMNS = [
  ['ts', 'ts'], ['received_at', 'receivedAt'], ['frame_id', 'frameId'], ['source', 'source'],
  ['input_sha256', 'inputSha256'], ['model_name', 'modelName'], ['model_version', 'modelVersion'], ['status', 'status'],
  ['label', 'label'], ['label_index', 'labelIndex'], ['score', 'score'], ['expert', 'expert'], ['early_exit', 'earlyExit'],
  ['base_confidence', 'baseConfidence'], ['gate', 'gate'], ['macs', 'macs'], ['trunk_us', 'trunkUs'], ['base_us', 'baseUs'],
  ['gate_us', 'gateUs'], ['expert_us', 'expertUs'], ['total_us', 'totalUs'], ['error_code', 'errorCode'],
  ['error_message', 'errorMessage'], ['window_offset', 'windowOffset'], ['window_start', 'windowStart'], ['rpm', 'rpm'],
  ['load', 'load'], ['threshold', 'threshold'],
] as const;
const KEYS = COLUMNS.map(([, key]) => key);
const INTO = `INSERT INTO decisions (${COLUMNS.map(([column]) => column).join(', ')}) VALUES `;

/** One row, with named parameters that `toParams` fills. */
export const INSERT_DECISION = `${INTO}(${KEYS.map((key) => `@${key}`).join(', ')})`;

/**
 * Rows per multi-row INSERT. One statement call per 64 rows instead of one per row lifted the batched writer from
 * about 100k to 170k rows/s (scripts/bench/audit.ts): most of a row's cost was the call, not SQLite's work.
 */
export const ROWS_PER_INSERT = 64;

/** ROWS_PER_INSERT rows, bound by position from `valuesOf` (named parameters would need a name per row). */
export const INSERT_DECISIONS = INTO + Array(ROWS_PER_INSERT).fill(`(${KEYS.map(() => '?').join(', ')})`).join(', ');

type SqlValue = string | number | bigint | Buffer | null;

/**
 * The named parameters of INSERT_DECISION. One object literal with every key in one order, whatever the status:
 * better-sqlite3 looks each name up in it, and a fixed shape keeps that lookup fast (spreads made it 2x slower).
 */
export function toParams(r: AuditRecord): Record<(typeof KEYS)[number], SqlValue> {
  const ok = r.status === 'ok' ? r : undefined;
  const t = ok?.timingsUs;
  const w = r.frame.window;
  return {
    ts: r.ts,
    receivedAt: r.frame.receivedAt ?? null,
    frameId: r.frame.frameId,
    source: r.frame.source ?? null,
    inputSha256: r.frame.inputSha256 ?? null,
    modelName: r.model?.name ?? null,
    modelVersion: r.model?.version ?? null,
    status: r.status,
    label: ok ? ok.label : null,
    labelIndex: ok ? ok.labelIndex : null,
    score: ok ? ok.score : null,
    expert: ok ? ok.expert : null,
    earlyExit: ok ? (ok.earlyExit ? 1 : 0) : null,
    baseConfidence: ok ? ok.baseConfidence : null,
    gate: ok && ok.gate.length > 0 ? encodeGate(ok.gate) : null,
    macs: ok ? ok.macs : null,
    trunkUs: t ? Math.round(t.trunk) : null,
    baseUs: t ? Math.round(t.base) : null,
    gateUs: t ? Math.round(t.gate) : null,
    expertUs: t ? Math.round(t.expert) : null,
    totalUs: t ? Math.round(t.total) : null,
    errorCode: r.status === 'ok' ? null : r.error.code,
    errorMessage: r.status === 'ok' ? null : r.error.message,
    windowOffset: w?.offset ?? null,
    windowStart: w?.start ?? null,
    rpm: w?.tags.rpm ?? null,
    load: w?.tags.load ?? null,
    threshold: ok ? ok.threshold : null,
  };
}

/** The values of `records[start..start + count)` in column order, for INSERT_DECISIONS. */
export function valuesOf(records: readonly AuditRecord[], start: number, count: number): SqlValue[] {
  const values: SqlValue[] = [];
  for (let i = start; i < start + count; i++) {
    const params = toParams(records[i]);
    for (const key of KEYS) values.push(params[key]);
  }
  return values;
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
  /** Signal windows: where the window lies in its signal (null for images). */
  window: { offset: number; start: number | null; rpm: number | null; load: number | null } | null;
  /** Anomaly packages: the threshold the verdict was taken at (null for other tasks and rows before schema 4). */
  threshold: number | null;
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
  window_offset: number | null;
  window_start: number | null;
  rpm: number | null;
  load: number | null;
  threshold: number | null;
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
    window: c.window_offset === null ? null : { offset: c.window_offset, start: c.window_start, rpm: c.rpm, load: c.load },
    threshold: c.threshold,
  };
}
