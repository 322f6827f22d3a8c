import type { AuditEvent, AuditEventKind } from '../audit/events';
import type { UpdateEvent } from '../fleet/agent';
import { FINAL_UPDATE_STEPS, type CurrentUpdate, type LastUpdate, type UpdateStep } from '../protocol/update';

/**
 * What each step's start proves about the one before (`verifying` begins once the download is whole), said as such:
 * the step's own message says what comes next ("checking the sha256"). The swap
 * (`watching`) and a rollback change the running model and are audited as `model_updated` / `model_rolled_back`
 * by the audit log itself, which also restarts routing health against the new calibration.
 */
const STEP_KINDS: Partial<Record<UpdateStep, Array<{ kind: AuditEventKind; proves?: string }>>> = {
  requested: [{ kind: 'update_requested' }],
  verifying: [{ kind: 'update_downloaded', proves: 'downloaded whole' }],
  unpacking: [{ kind: 'update_verified', proves: 'its sha256 matches the signed one' }],
  staged: [{ kind: 'update_staged' }],
  done: [{ kind: 'update_watched' }, { kind: 'update_done' }],
};

/** The audit events of one update step (the model changes aside): every request leaves a trail under its id. */
export function updateAuditEvents(event: UpdateEvent): AuditEvent[] {
  const details = { correlationId: event.correlationId, keyId: event.keyId ?? null, version: event.version };
  if (event.step === 'failed') {
    // Refused before anything was fetched (bad signature, not newer, busy), or failed on the way.
    const kind = event.at === 'requested' ? 'update_refused' : 'update_failed';
    return [{ kind, message: `${event.version}: ${event.message}`, details: { ...details, code: event.error?.code ?? null, at: event.at ?? null } }];
  }
  return (STEP_KINDS[event.step] ?? []).map(({ kind, proves }) => ({ kind, message: `${event.version}: ${proves ?? event.message}`, details }));
}

/**
 * The update part of the retained status: `update` is the update running now (absent when none runs), and
 * `lastUpdate` how the last one ended. A refused update is history, never the device's state.
 */
export class UpdateStatus {
  private current: CurrentUpdate | null = null;
  private last: LastUpdate | null = null;

  apply(event: UpdateEvent): void {
    if (!FINAL_UPDATE_STEPS.has(event.step)) {
      // A request refused as busy must not hide the update that keeps running.
      if (event.step !== 'requested' || this.current === null) {
        this.current = { step: event.step, version: event.version, correlationId: event.correlationId, since: event.ts };
      }
      return;
    }
    if (this.current?.correlationId === event.correlationId || event.at !== 'requested') this.current = null;
    this.last = {
      outcome: event.step as LastUpdate['outcome'],
      version: event.version,
      correlationId: event.correlationId,
      ...(event.error ? { error: event.error } : {}),
      ...(event.at ? { at: event.at } : {}),
      ts: event.ts,
    };
  }

  info(): { update?: CurrentUpdate; lastUpdate?: LastUpdate } {
    return { ...(this.current ? { update: this.current } : {}), ...(this.last ? { lastUpdate: this.last } : {}) };
  }
}
