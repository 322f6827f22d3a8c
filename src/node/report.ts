import type { AuditLog } from '../audit/audit-log';
import type { AuditRecovery } from '../audit/open';
import type { HealthAlarm } from '../audit/health';
import { errorCode, errorMessage } from '../errors';
import type { Logger } from '../log';
import type { MqttTransport } from '../transport/client';
import type { NodeFault } from './faults';
import type { NodeSnapshot } from './stats';

export interface ReporterParts {
  transport: () => MqttTransport | undefined;
  audit?: AuditLog;
  snapshot: () => NodeSnapshot;
  /** What the retained status says besides online/offline: the model, where it runs, any update, faults. */
  status: () => Record<string, unknown>;
  logger: Logger;
}

/**
 * What the node tells the plant: the periodic health report, routing alarms and device faults on MQTT, faults
 * also in the audit log and the retained status. The status is published directly, not through the outbox, so
 * a full disk is still reported while the broker is there.
 */
export class Reporter {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly parts: ReporterParts) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.health(), intervalMs);
    this.timer.unref();
  }

  /** Stops the period, and reports once more. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.health();
  }

  health(): void {
    const transport = this.parts.transport();
    if (!transport) return;
    const snap = this.parts.snapshot();
    const health = this.parts.audit?.health();
    this.toOutbox('health', () =>
      transport.publishHealth({
        counters: { ...snap.totals, unpublished: snap.unpublished, unaudited: snap.unaudited },
        sources: snap.sources,
        routing: {
          model: snap.model,
          framesPerSecond: snap.framesPerSecond,
          // The same two labelled spans as the summary, the dashboard and /metrics.
          windows: snap.windows,
          earlyExitRate: snap.earlyExitRate,
          expertShares: snap.expertShares,
          latencyUs: snap.latencyUs,
          ...(health ? { window: health.window, allTime: health.allTime, alarms: health.alarms } : {}),
          faults: snap.faults,
          conditionAlarms: snap.conditionAlarms,
          auditUnavailable: snap.auditUnavailable,
          auditRecovered: snap.auditRecovered,
          outboxUnavailable: snap.outboxUnavailable,
          outboxRecovered: snap.outboxRecovered,
        },
      }),
    );
  }

  /** Routing alarms from the audit log, published on the alarm topic as they are raised and cleared. */
  routingAlarm(alarm: HealthAlarm): void {
    this.toOutbox('alarm', () =>
      this.parts.transport()?.publishAlarm({
        severity: alarm.kind === 'router_collapse' && alarm.state === 'raised' ? 'critical' : 'warning',
        code: `E_ROUTING_${alarm.kind.toUpperCase()}`,
        message: alarm.message,
        details: { state: alarm.state, value: alarm.value, bound: alarm.bound, experts: alarm.experts },
      }),
    );
  }

  /** The audit database was unreadable at start and moved aside (the outbox's own recovery the transport announces). */
  auditRecovered(recovered: AuditRecovery): void {
    this.toOutbox('alarm', () =>
      this.parts.transport()?.publishAlarm({
        severity: 'warning',
        code: 'E_AUDIT_RECOVERED',
        message: `the audit database was unreadable (${recovered.code}) and was moved to ${recovered.movedTo}; a fresh one was started, the earlier decisions and events stay in the moved file`,
        details: { ...recovered },
      }),
    );
  }

  fault(fault: NodeFault): void {
    const log = { code: fault.code, source: fault.source, state: fault.state };
    if (fault.state === 'raised') this.parts.logger.error(log, fault.message);
    else this.parts.logger.info(log, fault.message);
    this.parts.audit?.event({
      kind: fault.state === 'raised' ? 'alarm_raised' : 'alarm_cleared',
      message: fault.message,
      details: { alarm: fault.code, source: fault.source },
    });
    this.status();
    this.toOutbox('alarm', () =>
      this.parts.transport()?.publishAlarm({
        severity: fault.state === 'raised' ? 'critical' : 'warning',
        code: fault.code,
        message: fault.message,
        details: { state: fault.state, since: fault.since, ...(fault.source ? { source: fault.source } : {}) },
      }),
    );
  }

  status(): void {
    this.parts.transport()?.setStatusInfo(this.parts.status());
  }

  /** The outbox can fail (a full disk): the node logs it and keeps deciding; the retained status still says why. */
  private toOutbox(what: string, put: () => unknown): void {
    try {
      put();
    } catch (err) {
      this.parts.logger.error({ what, code: errorCode(err), err: errorMessage(err) }, 'not queued for MQTT');
    }
  }
}
