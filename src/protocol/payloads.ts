import { z } from 'zod';
import { decisionEssentials, type Decision } from '../engine/decision';
import type { AnomalyFields } from '../engine/tasks';
import type { WindowPlace } from '../ingest/kinds/signal/window-source';
import { heatmapPng } from './heatmap';

/**
 * Versioned JSON payloads (documented with examples in src/transport/README.md). Each carries `schema`
 * so consumers can tell versions apart; a breaking change bumps the number after the slash.
 */
export const RESULT_SCHEMA = 'sgmoe.result/1';
export const STATUS_SCHEMA = 'sgmoe.status/1';
export const HEALTH_SCHEMA = 'sgmoe.health/1';
export const ALARM_SCHEMA = 'sgmoe.alarm/1';
export const REPLY_SCHEMA = 'sgmoe.reply/1';
export const ANOMALY_SCHEMA = 'sgmoe.anomaly/1';
export const REJECTED_SCHEMA = 'sgmoe.rejected/1';

export const isoTime = z.iso.datetime({ offset: true });
const modelRef = z.object({ name: z.string(), version: z.string() });
const counters = z.record(z.string(), z.number());

/** One decision per frame, on `result` (documented field by field in src/transport/README.md). */
export const resultPayloadSchema = z.object({
  schema: z.literal(RESULT_SCHEMA),
  frameId: z.string().min(1),
  ts: isoTime,
  source: z.string(),
  model: modelRef,
  label: z.string(),
  score: z.number(),
  expert: z.number().int().nonnegative().nullable(),
  earlyExit: z.boolean(),
  baseConfidence: z.number(),
  gate: z.array(z.number()),
  macs: z.number().nonnegative(),
  timingsUs: z.object({ trunk: z.number(), base: z.number(), gate: z.number(), expert: z.number(), total: z.number() }),
  /** Signal windows: when the window's first sample was taken (streams with timestamps), its offset, the block's tags. */
  window: z.object({ start: isoTime.optional(), offset: z.number().int().nonnegative(), rpm: z.number().optional(), load: z.number().optional() }).optional(),
});
export type ResultPayload = z.infer<typeof resultPayloadSchema>;

/**
 * The device's state, retained on `status`: `online` (birth, on every connect), `offline` with reason
 * `shutdown` (clean stop) or `lost` (the last will, published by the broker). The will is written at connect and the
 * broker publishes it as written, so its `ts` (and `info`) are the connect's, not the loss's: `willSetAt` says so.
 */
export const statusPayloadSchema = z.object({
  schema: z.literal(STATUS_SCHEMA),
  state: z.enum(['online', 'offline']),
  reason: z.enum(['connected', 'shutdown', 'lost']),
  ts: isoTime,
  site: z.string(),
  device: z.string(),
  clientId: z.string(),
  /** The last will only (reason `lost`): when it was set, at connect, equal to its `ts`. The loss came later. */
  willSetAt: isoTime.optional(),
  /** The optional signed-command fields this device checks (`ENVELOPE_FIELDS`); absent from older devices. */
  envelopeFields: z.array(z.string()).optional(),
  /** What the node wants the plant to know (model, versions...), set with `MqttTransport.setStatusInfo`. */
  info: z.record(z.string(), z.unknown()),
});
export type StatusPayload = z.infer<typeof statusPayloadSchema>;

export const outboxStatsSchema = z.object({
  pending: z.number().int(),
  queued: z.number().int(),
  sent: z.number().int(),
  dropped: z.number().int(),
});

/** Periodic routing health and counters, on `health`. */
export const healthPayloadSchema = z.object({
  schema: z.literal(HEALTH_SCHEMA),
  ts: isoTime,
  uptimeS: z.number().nonnegative(),
  outbox: outboxStatsSchema,
  counters,
  /** Per source: ingested = decided + rejected + dropped + pending, errors, and its kind's own counters. */
  sources: z
    .array(
      z.object({
        name: z.string(),
        kind: z.string(),
        ingested: z.number(),
        decided: z.number(),
        rejected: z.number(),
        dropped: z.number(),
        pending: z.number(),
        errors: z.number(),
        counters: counters.optional(),
      }),
    )
    .optional(),
  /** Routing health from the audit log (expert shares, early-exit rate...), shape owned by the node. */
  routing: z.record(z.string(), z.unknown()).optional(),
});
export type HealthPayload = z.infer<typeof healthPayloadSchema>;

/** Something an operator must see, on `alarm`; alarms are never dropped from the outbox. */
export const alarmPayloadSchema = z.object({
  schema: z.literal(ALARM_SCHEMA),
  ts: isoTime,
  severity: z.enum(['warning', 'critical']),
  code: z.string().regex(/^E_[A-Z0-9_]+$/),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type AlarmPayload = z.infer<typeof alarmPayloadSchema>;

/** The answer to a command, on `cmd/{name}/reply`, carrying the request's correlation id. */
export const replyPayloadSchema = z.discriminatedUnion('ok', [
  z.object({
    schema: z.literal(REPLY_SCHEMA),
    id: z.string().nullable(),
    command: z.string(),
    ts: isoTime,
    ok: z.literal(true),
    /** Set on the progress messages of a long command (an update's steps); its one final reply has none. */
    progress: z.literal(true).optional(),
    data: z.unknown(),
  }),
  z.object({
    schema: z.literal(REPLY_SCHEMA),
    id: z.string().nullable(),
    command: z.string(),
    ts: isoTime,
    ok: z.literal(false),
    error: z.object({ code: z.string(), message: z.string() }),
  }),
]);
export type ReplyPayload = z.infer<typeof replyPayloadSchema>;

/** Where a decided frame came from and when it was received; for a signal window, where in the signal it lies. */
export interface FrameMeta {
  source: string;
  ts: Date;
  window?: WindowPlace;
}

export function resultPayload(decision: Decision, frame: FrameMeta): ResultPayload {
  return {
    schema: RESULT_SCHEMA,
    frameId: decision.frameId,
    ts: frame.ts.toISOString(),
    source: frame.source,
    model: { name: decision.model.name, version: decision.model.version },
    ...decisionEssentials(decision),
    ...(frame.window && {
      window: { ...(frame.window.start !== undefined && { start: new Date(frame.window.start).toISOString() }), offset: frame.window.offset, ...frame.window.tags },
    }),
  };
}

/**
 * A frame the node could not decide (corrupt, empty, too large, outside the ROI...), on `rejected`: the line learns
 * which frame got no result and why, as the audit log and the hot folder's `rejected/` do.
 */
export const rejectedPayloadSchema = z.object({
  schema: z.literal(REJECTED_SCHEMA),
  frameId: z.string().min(1),
  ts: isoTime,
  source: z.string(),
  model: modelRef,
  code: z.string(),
  message: z.string(),
});
export type RejectedPayload = z.infer<typeof rejectedPayloadSchema>;

export function rejectedPayload(frameId: string, error: { code: string; message: string }, model: { name: string; version: string }, frame: FrameMeta): RejectedPayload {
  return { schema: REJECTED_SCHEMA, frameId, ts: frame.ts.toISOString(), source: frame.source, model: { name: model.name, version: model.version }, code: error.code, message: error.message };
}

/** An anomalous frame, also on `anomaly` (task anomaly): the verdict's numbers and a small heatmap PNG (base64). */
export const anomalyPayloadSchema = z.object({
  schema: z.literal(ANOMALY_SCHEMA),
  frameId: z.string().min(1),
  ts: isoTime,
  source: z.string(),
  model: modelRef,
  score: z.number(),
  threshold: z.number(),
  expert: z.number().int().nonnegative().nullable(),
  grid: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  heatmapPng: z.string(),
});
export type AnomalyPayload = z.infer<typeof anomalyPayloadSchema>;

/** The anomaly message of a decision, or null when the decision is no anomaly (or not of the anomaly task). */
export function anomalyPayload(decision: Decision, frame: FrameMeta): AnomalyPayload | null {
  const anomaly = (decision.extra as Partial<AnomalyFields> | undefined)?.anomaly;
  if (!anomaly || anomaly.verdict !== 'anomalous') return null;
  return {
    schema: ANOMALY_SCHEMA,
    frameId: decision.frameId,
    ts: frame.ts.toISOString(),
    source: frame.source,
    model: { name: decision.model.name, version: decision.model.version },
    score: anomaly.score,
    threshold: anomaly.threshold,
    expert: decision.expert,
    grid: anomaly.grid,
    heatmapPng: heatmapPng(anomaly.map, anomaly.grid).toString('base64'),
  };
}
