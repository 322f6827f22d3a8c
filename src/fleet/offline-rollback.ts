import { randomUUID } from 'node:crypto';
import { EventLog } from '../audit/events';
import { openAuditDb } from '../audit/open';
import { PackageStore } from './store';

export interface OfflineRollbackOptions {
  /** The device's package store (`fleet.root`). */
  root: string;
  /** The device's audit log (`audit.file`): the rollback is recorded there as the node would record it. */
  audit?: string;
  correlationId?: string;
  reason?: string;
}

/**
 * `sgmoe model rollback --root` on a device whose node is stopped: points `current` back at the package before
 * it (the next start runs that one) and leaves a `model_rolled_back` event in the device's audit log, so the
 * rollback is in the same trail as one done over MQTT.
 */
export async function rollbackStopped(options: OfflineRollbackOptions): Promise<{ from: string; to: string; correlationId: string; audited: boolean }> {
  const correlationId = options.correlationId ?? randomUUID();
  const { from, to } = await new PackageStore(options.root).revertCurrent();
  if (!options.audit) return { from, to, correlationId, audited: false };
  const { db } = openAuditDb(options.audit);
  try {
    const id = new EventLog(db).write({
      kind: 'model_rolled_back',
      message: `model rolled back on the stopped device: ${from} -> ${to}`,
      details: { correlationId, from, to, via: 'cli', reason: options.reason ?? 'requested by an operator' },
    });
    return { from, to, correlationId, audited: id !== null };
  } finally {
    db.close();
  }
}
