import type { Database } from 'better-sqlite3';
import { silentLogger, type Logger } from '../log';
import { EventLog, type AuditEvent } from './events';
import { RoutingHealth, type HealthAlarm, type HealthThresholds, type RoutingStats, type ScoreQuantile } from './health';
import { openAuditDb, type AuditRecovery } from './open';
import { activeAlarms, type ActiveAlarmRow } from './query';
import type { AuditRecord, ModelRef } from './record';
import { Retention, type RetentionPolicy } from './retention';
import { AuditWriter, type AuditWriterCounters, type AuditWriterOptions } from './writer';

export interface AuditLogParts {
  db: Database;
  writer: AuditWriter;
  events: EventLog;
  health: RoutingHealth;
  retention?: Retention;
}

export interface OpenAuditLogOptions {
  /** The model running now: its expert count, calibration shares and (anomaly packages) score quantiles set up routing health. */
  model: ModelRef & { experts: number; expertShare?: readonly number[]; scoreQuantiles?: readonly ScoreQuantile[] };
  writer?: Omit<AuditWriterOptions, 'logger'>;
  health?: { windowSize?: number; thresholds?: Partial<HealthThresholds> };
  retention?: RetentionPolicy & { intervalMs?: number };
  /** Alarms as they are raised and cleared, for the node to publish on the `health` topic. */
  onAlarm?: (alarm: HealthAlarm) => void;
  busyTimeoutMs?: number;
  logger?: Logger;
  now?: () => number;
}

/** What a frame's latest audit row says became of it. */
export type RowOutcome = { status: 'ok' } | { status: 'rejected'; code: string; message: string };

export interface AuditHealthReport {
  model: ModelRef;
  window: RoutingStats;
  allTime: RoutingStats;
  alarms: HealthAlarm[];
  /** Records the log could not keep (overflow + failed) tell how many frames went unaudited. */
  writer: AuditWriterCounters;
}

/**
 * The audit log of one node: the batched decisions writer, the events, routing health with its alarms
 * (each written as an event) and retention, over one database.
 */
export class AuditLog {
  private model: ModelRef;
  /** Set when the file was unreadable at open and moved aside for a fresh one (its `db_recovered` event is the first). */
  recovered: AuditRecovery | null = null;

  constructor(
    private readonly parts: AuditLogParts,
    model: ModelRef,
  ) {
    this.model = model;
    parts.health.onAlarm((alarm) => this.alarm(alarm));
  }

  static open(file: string, options: OpenAuditLogOptions): AuditLog {
    const logger = options.logger ?? silentLogger;
    const now = options.now ?? Date.now;
    const { db, recovered } = openAuditDb(file, { logger, now, busyTimeoutMs: options.busyTimeoutMs });
    const events = new EventLog(db, { logger, now });
    const { experts, expertShare, scoreQuantiles } = options.model;
    const health = new RoutingHealth({ experts, expectedShare: expertShare, scoreQuantiles, ...options.health, logger });
    const retention = options.retention ? new Retention(db, options.retention, { logger, now }) : undefined;
    const writer = new AuditWriter(db, { ...options.writer, logger });
    const log = new AuditLog({ db, writer, events, health, retention }, { name: options.model.name, version: options.model.version });
    log.recovered = recovered;
    // After the log's own listener, so an alarm is in the database before the node publishes it.
    if (options.onAlarm) health.onAlarm(options.onAlarm);
    retention?.start(options.retention?.intervalMs);
    log.event({ kind: 'start', message: 'audit log opened' });
    return log;
  }

  /** Hands one frame's outcome over; never waits and never throws. False when it could not be kept. */
  record(record: AuditRecord): boolean {
    this.parts.health.observe(record);
    return this.parts.writer.record(record);
  }

  /** Routing health sees a frame's outcome at once; its row is committed later, with `commit`. */
  observe(record: AuditRecord): void {
    this.parts.health.observe(record);
  }

  /** Writes these rows now, in one transaction, or throws E_AUDIT_WRITE (a full disk) having written none. */
  commit(records: readonly AuditRecord[]): void {
    this.parts.writer.commitNow(records);
  }

  /**
   * The latest outcome of this frame (its id and bytes) from this source: a hot folder finds there a file a kill left
   * between its audit row and its move to done/ or rejected/, or while it held the file however many others were
   * decided meanwhile (for such a source the row follows its queued result, see Settler; rows an older release wrote
   * are not asked). Signal windows carry no bytes: their rows, no sha256.
   */
  latestOutcome(source: string, frameId: string, inputSha256: string | null): RowOutcome | undefined {
    const row = this.parts.db
      .prepare(
        `SELECT status, error_code, error_message FROM decisions WHERE frame_id = @frameId AND source = @source AND input_sha256 IS @sha
         AND status IN ('ok', 'rejected') AND id > (SELECT after_id FROM results_first) ORDER BY id DESC LIMIT 1`,
      )
      .get({ source, frameId, sha: inputSha256 }) as { status: 'ok' | 'rejected'; error_code: string | null; error_message: string | null } | undefined;
    if (!row) return undefined;
    return row.status === 'ok' ? { status: 'ok' } : { status: 'rejected', code: row.error_code ?? 'E_INTERNAL', message: row.error_message ?? '' };
  }

  event(event: AuditEvent): number | null {
    return this.parts.events.write({ model: this.model, ...event });
  }

  /** After a hot swap or a rollback: new model, fresh routing statistics against its calibration. */
  modelChanged(
    kind: 'model_loaded' | 'model_updated' | 'model_rolled_back',
    model: ModelRef & { expertShare?: readonly number[]; scoreQuantiles?: readonly ScoreQuantile[] },
    details?: Record<string, unknown>,
  ): void {
    const from = this.model;
    this.model = { name: model.name, version: model.version };
    this.parts.health.reset(model.expertShare, undefined, model.scoreQuantiles);
    this.event({ kind, message: `${kind.replace(/_/g, ' ')}: ${from.name}@${from.version} -> ${model.name}@${model.version}`, details: { from, ...details } });
  }

  /** The alarms this log holds as raised and not cleared, as a restarted node finds them. */
  activeAlarms(): ActiveAlarmRow[] {
    return activeAlarms(this.parts.db);
  }

  health(): AuditHealthReport {
    return { model: this.model, ...this.parts.health.snapshot(), writer: this.parts.writer.counters };
  }

  /** Writes what is waiting now (the writer also does so by itself). */
  flush(): number {
    return this.parts.writer.flush();
  }

  close(): void {
    this.parts.retention?.stop();
    this.parts.writer.close();
    const c = this.parts.writer.counters;
    this.event({ kind: 'stop', message: 'audit log closed', details: { ...c } });
    this.parts.db.close();
  }

  private alarm(alarm: HealthAlarm): void {
    this.event({
      kind: alarm.state === 'raised' ? 'alarm_raised' : 'alarm_cleared',
      message: alarm.message,
      details: { alarm: alarm.kind, value: alarm.value, bound: alarm.bound, experts: alarm.experts, window: alarm.window },
    });
  }
}
