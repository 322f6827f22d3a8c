import { randomUUID } from 'node:crypto';
import { EventLog } from '../audit/events';
import { openAuditDb } from '../audit/open';
import { SgmoeError } from '../errors';
import { PackageStore } from './store';
import { describeOwner } from './store-lock';

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
 * rollback is in the same trail as one done over MQTT. Refused while a node runs on the store: it would go on running
 * the package it loaded while `current` and the history said otherwise.
 */
export async function rollbackStopped(options: OfflineRollbackOptions): Promise<{ from: string; to: string; correlationId: string; audited: boolean }> {
  const correlationId = options.correlationId ?? randomUUID();
  const store = new PackageStore(options.root);
  const running = await store.lock.holder();
  if (running) {
    throw new SgmoeError(
      'E_STORE_IN_USE',
      `a node runs on ${options.root}: ${describeOwner(running, store.lock.path)}. The offline rollback is for a stopped device: ` +
        'stop the node first, or roll the running node back over MQTT with `sgmoe model rollback --broker URL --site SITE --device DEVICE --key KEY` (or `sgmoe cmd rollback`)',
      { ...running },
    );
  }
  // Held while `current` moves: a node starting meanwhile refuses rather than load the package being set aside.
  await store.lock.acquire();
  let reverted: { from: string; to: string };
  try {
    reverted = await store.revertCurrent();
  } finally {
    await store.lock.release();
  }
  const { from, to } = reverted;
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
