import type { Database, Statement } from 'better-sqlite3';
import { errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import type { ModelRef } from './record';
import { sqliteCode } from './sqlite-code';

/** What happens to the node besides decisions: model life cycle, alarms, configuration, the log itself. */
export const AUDIT_EVENT_KINDS = [
  'start',
  'stop',
  'model_loaded',
  'model_updated',
  'model_rolled_back',
  // the steps of a fleet update, each with the request's correlation id in `details.correlationId`
  'update_requested',
  'update_refused',
  'update_downloaded',
  'update_verified',
  'update_staged',
  'update_watched',
  'update_done',
  'update_failed',
  'config_changed',
  'command_refused',
  // a dashboard request (a read or a verdict) without the operator token (src/node/dashboard/refusals.ts)
  'dashboard_refused',
  'alarm_raised',
  'alarm_cleared',
  'db_recovered',
] as const;
export type AuditEventKind = (typeof AUDIT_EVENT_KINDS)[number];

export interface AuditEvent {
  kind: AuditEventKind;
  message: string;
  model?: ModelRef | null;
  details?: Record<string, unknown>;
  /** ms since epoch; defaults to now. */
  ts?: number;
}

export interface EventLogOptions {
  logger?: Logger;
  now?: () => number;
}

/**
 * Writes events straight away (they are rare and each one matters). A failed write is logged and
 * reported as null, never thrown: the node must keep deciding when the disk is full.
 */
export class EventLog {
  private readonly insert: Statement;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(db: Database, options: EventLogOptions = {}) {
    this.insert = db.prepare(
      'INSERT INTO events (ts, kind, model_name, model_version, message, details) VALUES (@ts, @kind, @modelName, @modelVersion, @message, @details)',
    );
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  /** Returns the event's id, or null when it could not be written. */
  write(event: AuditEvent): number | null {
    try {
      const info = this.insert.run({
        ts: event.ts ?? this.now(),
        kind: event.kind,
        modelName: event.model?.name ?? null,
        modelVersion: event.model?.version ?? null,
        message: event.message,
        details: event.details === undefined ? null : JSON.stringify(event.details),
      });
      return Number(info.lastInsertRowid);
    } catch (err) {
      this.logger.error({ err: errorMessage(err), code: sqliteCode(err), event: event.kind }, 'audit event not written');
      return null;
    }
  }
}
