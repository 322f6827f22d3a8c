import type { AuditLog } from '../audit/audit-log';
import { errorCode, errorMessage } from '../errors';
import type { Logger } from '../log';
import type { EdgeNode } from '../node/edge-node';
import type { MqttTransport } from '../transport/client';
import { ConditionAlarms, type ConditionAlarm } from './alarms';

export interface ConditionWatchOptions {
  windows: number;
  normal: string;
  transport?: MqttTransport;
  audit?: AuditLog;
  logger: Logger;
}

const CODES = { condition_change: 'E_CONDITION_CHANGE', unknown_regime: 'E_REGIME_UNKNOWN' } as const;

/**
 * Follows the node's decisions that carry a condition (task condition) per machine (source) and turns debounced
 * changes into alarms: on the MQTT `alarm` topic and as audit events. Decisions of other tasks pass unseen.
 */
export function watchConditions(node: EdgeNode, options: ConditionWatchOptions): ConditionAlarms {
  const alarms = new ConditionAlarms(options.windows, options.normal);
  if (options.audit) alarms.restore(options.audit.activeAlarms());
  node.on('decision', (frame, decision) => {
    const extra = decision.extra as { condition?: unknown; unknownRegime?: unknown } | undefined;
    if (typeof extra?.condition !== 'string') return;
    for (const alarm of alarms.observe(frame.source, extra.condition, extra.unknownRegime === true)) raise(alarm, decision.model, options);
  });
  return alarms;
}

function raise(alarm: ConditionAlarm, model: { name: string; version: string }, options: ConditionWatchOptions): void {
  const details = { kind: alarm.kind, state: alarm.state, machine: alarm.machine, ...alarm.details };
  options.logger.warn(details, alarm.message);
  options.audit?.event({ kind: alarm.state === 'raised' ? 'alarm_raised' : 'alarm_cleared', message: alarm.message, model, details });
  try {
    options.transport?.publishAlarm({ severity: 'warning', code: CODES[alarm.kind], message: alarm.message, details });
  } catch (err) {
    // A full outbox must not stop the node; the audit event above still records the alarm.
    options.logger.error({ code: errorCode(err), err: errorMessage(err) }, 'condition alarm not queued for MQTT');
  }
}
