import type { HealthAlarm } from '../audit/health';
import type { AuditRecovery } from '../audit/open';
import type { Decision } from '../engine/decision';
import type { Engine } from '../engine/engine';
import type { HealthSample } from '../fleet/host';
import type { FrameSource, SourceStats } from '../ingest/source';
import type { ActiveConditionAlarm } from '../maintenance/alarms';
import type { NodeFault } from './faults';
import { DecisionWindow, type WindowStats } from './windows';
import type { OutboxRecovery } from '../transport/outbox-file';

/** Per source, at every moment: ingested = decided + rejected + dropped + pending. */
export interface SourceAccount {
  name: string;
  kind: string;
  ingested: number;
  decided: number;
  rejected: number;
  dropped: number;
  pending: number;
  errors: number;
  /** The source's latest error (a camera unreachable, a folder missing), when it had one: with `at`, whether it is current. */
  lastError?: { code: string; message: string; at: number };
  /** What only some kinds of source count: decoder restarts and concealed corrupt packets (cameras), window resets
   * and payloads dropped before windowing (signals), files or windows an earlier run decided or rejected (hot folders). Absent
   * for the others. */
  counters?: Partial<Record<SourceCounter, number>>;
}

const SOURCE_COUNTERS = ['restarts', 'corrupt', 'windowResets', 'payloadsDropped', 'alreadyDecided', 'alreadyRejected'] as const;
type SourceCounter = (typeof SOURCE_COUNTERS)[number];

/** A local file the node runs without, and why (it decides on; what it cannot keep is counted). */
export interface Unavailable {
  code: string;
  message: string;
}

export interface NodeSnapshot {
  model: { name: string; version: string };
  settings: ReturnType<Engine['getSettings']>;
  /** Anomaly packages: the anomaly threshold in force (the early exit is `settings.threshold`). */
  anomalyThreshold?: number;
  /** ... and the false-alarm rate that threshold is set for (the package's, or an operator's since). */
  falseAlarmRate?: number;
  providers: Record<string, string>;
  sources: SourceAccount[];
  totals: Omit<SourceAccount, 'name' | 'kind' | 'counters' | 'lastError'>;
  /** The decision figures over both labelled spans; the three fields below are `sinceModel`'s. */
  windows: { sinceStart: WindowStats; sinceModel: WindowStats };
  earlyExitRate: number | null;
  expertShares: number[];
  latencyUs: { p50: number; p99: number } | null;
  framesPerSecond: number;
  outboxDepth: number | null;
  /**
   * Results, rejections and health reports the full outbox dropped, the oldest first (`mqtt.outbox.maxResults`), over
   * the outbox file's life, as the health report's `outbox.dropped`; null without MQTT.
   */
  outboxDropped: number | null;
  /** Decided frames the outbox could not store (they are in the audit log). */
  unpublished: number;
  /** Frames whose audit row could not be written (no audit log, a full disk, an overflowing writer). */
  unaudited: number;
  /** Why the audit log is missing, when it is. */
  auditUnavailable: Unavailable | null;
  /** The audit file found unreadable at start and moved aside: where to, why, and when; the earlier rows are there. */
  auditRecovered: AuditRecovery | null;
  /** Why the configured outbox is missing, when it is: results then wait in memory and a restart loses them. */
  outboxUnavailable: Unavailable | null;
  /** The outbox file found corrupt at start and moved aside, with how many queued results it may have held. */
  outboxRecovered: OutboxRecovery | null;
  /** Routing alarms from the audit log. */
  alarms: HealthAlarm[];
  /** Condition-monitoring alarms raised now (task condition), per machine. */
  conditionAlarms: ActiveConditionAlarm[];
  /** Device faults raised now: a full disk, an ROI outside a source's frames, a broker refusing the node. */
  faults: NodeFault[];
  uptimeS: number;
}

/** What the snapshot reads besides the counters: the parts as they are now. */
export interface SnapshotParts {
  engine: Engine;
  sources: readonly FrameSource[];
  outboxDepth: number | null;
  outboxDropped: number | null;
  audit?: { alarms: HealthAlarm[]; unaudited: number };
  auditUnavailable?: Unavailable;
  auditRecovered?: AuditRecovery | null;
  outboxUnavailable?: Unavailable;
  outboxRecovered?: OutboxRecovery | null;
  faults: NodeFault[];
  conditionAlarms: ActiveConditionAlarm[];
}

/** The node's running counters: decisions, routing, latency, and what could not be kept. */
export class NodeStats {
  private readonly startedAt = Date.now();
  private readonly sinceStart: DecisionWindow;
  private sinceModel: DecisionWindow;
  /** Frames the engine failed on (bad input excluded): the error rate a model update is judged by. */
  private engineErrors = 0;
  /** Decisions the outbox could not store (e.g. a full disk); they are still in the audit log. */
  private unpublished = 0;
  /** Frames settled without their audit row (a source that cannot replay them, on a full disk). */
  private unaudited = 0;

  constructor(experts: number, model: { name: string; version: string }) {
    this.sinceStart = new DecisionWindow('sinceStart', experts);
    this.sinceModel = new DecisionWindow('sinceModel', experts, model);
  }

  get uptimeS(): number {
    return (Date.now() - this.startedAt) / 1000;
  }

  decision(decision: Decision): void {
    this.sinceStart.add(decision);
    this.sinceModel.add(decision);
  }

  engineError(): void {
    this.engineErrors++;
  }

  /** A frame settled although its commit failed (its source cannot wait for the disk). */
  settledUncommitted(audited: boolean, published: boolean): void {
    if (!audited) this.unaudited++;
    if (!published) this.unpublished++;
  }

  /** A new model: the `sinceModel` span starts again against it; `sinceStart` goes on. */
  modelChanged(experts: number, model: { name: string; version: string }): void {
    this.sinceModel = new DecisionWindow('sinceModel', experts, model);
  }

  /** What the fleet agent's health watch reads (HealthProbe), without the routing window the node adds. */
  sample(): Omit<HealthSample, 'routing'> {
    const { decided, anomalous } = this.sinceStart.stats();
    return { frames: decided + this.engineErrors, errors: this.engineErrors, anomalous, latencyP99Us: this.sinceModel.latency.percentiles()?.p99 ?? null };
  }

  snapshot(parts: SnapshotParts): NodeSnapshot {
    const sources = parts.sources.map((source): SourceAccount => {
      const s = source.stats();
      return {
        name: s.name,
        kind: s.kind,
        ingested: s.frames,
        decided: s.decided,
        rejected: s.rejected,
        dropped: s.dropped,
        pending: s.frames - s.decided - s.rejected - s.dropped,
        errors: s.errors,
        ...(s.lastError ? { lastError: s.lastError } : {}),
        ...sourceCounters(s),
      };
    });
    const sum = (k: keyof NodeSnapshot['totals']) => sources.reduce((a, s) => a + s[k], 0);
    const { engine } = parts;
    const windows = { sinceStart: this.sinceStart.stats(), sinceModel: this.sinceModel.stats() };
    return {
      model: engine.model,
      settings: engine.getSettings(),
      ...(engine.task.currentThreshold !== undefined ? { anomalyThreshold: engine.task.currentThreshold, falseAlarmRate: engine.task.currentFalseAlarmRate } : {}),
      providers: engine.providerSummary(),
      sources,
      totals: { ingested: sum('ingested'), decided: sum('decided'), rejected: sum('rejected'), dropped: sum('dropped'), pending: sum('pending'), errors: sum('errors') },
      windows,
      earlyExitRate: windows.sinceModel.earlyExitRate,
      expertShares: windows.sinceModel.expertShares,
      latencyUs: windows.sinceModel.latencyUs,
      framesPerSecond: this.sinceStart.latency.rate(),
      outboxDepth: parts.outboxDepth,
      outboxDropped: parts.outboxDropped,
      unpublished: this.unpublished,
      unaudited: parts.audit ? parts.audit.unaudited + this.unaudited : parts.auditUnavailable ? sum('decided') + sum('rejected') + sum('dropped') : 0,
      auditUnavailable: parts.auditUnavailable ? { code: parts.auditUnavailable.code, message: parts.auditUnavailable.message } : null,
      auditRecovered: parts.auditRecovered ?? null,
      outboxUnavailable: parts.outboxUnavailable ? { code: parts.outboxUnavailable.code, message: parts.outboxUnavailable.message } : null,
      outboxRecovered: parts.outboxRecovered ?? null,
      alarms: parts.audit?.alarms ?? [],
      faults: parts.faults,
      conditionAlarms: parts.conditionAlarms,
      uptimeS: this.uptimeS,
    };
  }
}

function sourceCounters(s: SourceStats): Pick<SourceAccount, 'counters'> {
  const present = SOURCE_COUNTERS.filter((k) => s[k] !== undefined);
  return present.length === 0 ? {} : { counters: Object.fromEntries(present.map((k) => [k, s[k]])) };
}
