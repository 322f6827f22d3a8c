import { decisionEssentials, type Decision, type StageTimingsUs } from '../engine/decision';
import type { AnomalyFields } from '../engine/tasks';
import type { WindowPlace } from '../ingest/kinds/signal/window-source';

export type AuditStatus = 'ok' | 'rejected' | 'dropped';
export const AUDIT_STATUSES: readonly AuditStatus[] = ['ok', 'rejected', 'dropped'];

export interface ModelRef {
  name: string;
  version: string;
}

/** What the node knows about a frame whatever became of it. */
export interface FrameInfo {
  frameId: string;
  source?: string;
  /** ms since epoch. */
  receivedAt?: number;
  /**
   * sha256 (hex) of the input bytes, so a part can be traced back to the exact image; of a raw frame (decoded pixels),
   * that of the PNG kept or held for review, when one was made (ingest/raw-png).
   */
  inputSha256?: string;
  /** A signal window's place in its signal, so a row leads back to the samples and the machine's regime. */
  window?: WindowPlace;
}

interface RecordBase {
  /** ms since epoch when the outcome was known. */
  ts: number;
  frame: FrameInfo;
  /** The model that ran (or was loaded) for this frame; a hot swap changes it between frames. */
  model: ModelRef | null;
}

export interface DecidedRecord extends RecordBase {
  status: 'ok';
  label: string;
  labelIndex: number;
  score: number;
  expert: number | null;
  earlyExit: boolean;
  baseConfidence: number;
  gate: readonly number[];
  macs: number;
  timingsUs: StageTimingsUs;
  /** Anomaly packages: the threshold the verdict was taken at (null for other tasks). */
  threshold: number | null;
}

export interface FailedRecord extends RecordBase {
  status: 'rejected' | 'dropped';
  error: { code: string; message: string };
}

/** One row of the audit log: every frame that enters ends as exactly one of these. */
export type AuditRecord = DecidedRecord | FailedRecord;

export function decidedRecord(decision: Decision, frame: FrameInfo, ts = Date.now()): DecidedRecord {
  return {
    ts,
    frame,
    model: decision.model,
    status: 'ok',
    labelIndex: decision.labelIndex,
    ...decisionEssentials(decision),
    threshold: (decision.extra as Partial<AnomalyFields> | undefined)?.anomaly?.threshold ?? null,
  };
}

/** A frame refused for bad input (decode error, wrong size, ...). */
export function rejectedRecord(frame: FrameInfo, error: ErrorInfo, model: ModelRef | null, ts = Date.now()): FailedRecord {
  return failedRecord('rejected', frame, error, model, ts);
}

/** A frame let go under backpressure: counted, never silently lost. */
export function droppedRecord(frame: FrameInfo, error: ErrorInfo, model: ModelRef | null, ts = Date.now()): FailedRecord {
  return failedRecord('dropped', frame, error, model, ts);
}

type ErrorInfo = { code: string; message: string };

function failedRecord(status: FailedRecord['status'], frame: FrameInfo, error: ErrorInfo, model: ModelRef | null, ts: number): FailedRecord {
  // Copy only code and message: an Error instance would drag its stack into the buffer.
  return { ts, frame, model, status, error: { code: error.code, message: error.message } };
}
