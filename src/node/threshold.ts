import type { AuditLog } from '../audit/audit-log';
import type { Engine } from '../engine/engine';

/** Why the early-exit threshold is what it is, in the set-threshold reply and the audit events. */
export interface ThresholdOverride {
  value: number;
  source: 'command';
  /** When it was set (ISO 8601). */
  at: string;
}

/** What set-threshold answers: the value now active, the one it replaced, and why it stays. */
export interface SetThresholdReply {
  threshold: number;
  previous: number;
  source: 'command';
  at: string;
  /** A package swapped in later keeps this value, not its calibrated one, until the node restarts. */
  keptOnModelSwap: true;
  settings: ReturnType<Engine['getSettings']>;
}

/**
 * An operator's threshold outranks a package's calibrated one: it stays over model swaps until the node restarts
 * (a new package may bring a new calibration, so each swap's audit event records the value it set aside).
 */
export class ThresholdCommand {
  private override: ThresholdOverride | null = null;

  constructor(private readonly audit?: AuditLog) {}

  set(engine: Engine, threshold: number): SetThresholdReply {
    const previous = engine.getSettings().threshold;
    const settings = engine.configure({ threshold });
    this.override = { value: threshold, source: 'command', at: new Date().toISOString() };
    this.audit?.event({ kind: 'config_changed', message: `early-exit threshold set to ${threshold} by command (was ${previous})`, details: { ...this.override, previous } });
    return { threshold, previous, source: 'command', at: this.override.at, keptOnModelSwap: true, settings };
  }

  /** Applies the override, if any, to an engine about to be swapped in. */
  keep(next: Engine): void {
    const kept = this.override;
    if (!kept) return;
    const replaced = next.getSettings().threshold;
    next.configure({ threshold: kept.value });
    this.audit?.event({
      kind: 'config_changed',
      message: `early-exit threshold ${kept.value} (set by command at ${kept.at}) kept over ${next.model.name} ${next.model.version}'s ${replaced}`,
      details: { threshold: kept.value, source: kept.source, setAt: kept.at, replaced, model: next.model },
    });
  }
}
