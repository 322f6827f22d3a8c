import type { AuditLog } from '../audit/audit-log';
import type { Engine } from '../engine/engine';
import { setFalseAlarmRate } from '../engine/tasks';
import { errorMessage } from '../errors';
import type { CommandOrigin } from '../transport/commands';

/** Why an operator's value (an early-exit threshold, a false-alarm rate) is what it is, in replies and audit events. */
export interface ThresholdOverride {
  value: number;
  source: 'command';
  /** When it was set (ISO 8601). */
  at: string;
  /** The request that set it, and the operator key that authorised it (null: not set over MQTT). */
  correlationId: string | null;
  keyId: string | null;
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

/** What set-false-alarm-rate answers: the rate, the anomaly threshold it gives this package, and that it stays. */
export interface SetFalseAlarmRateReply {
  falseAlarmRate: number;
  threshold: number;
  /** A package swapped in later gets the threshold its own calibration gives this rate, until the node restarts. */
  keptOnModelSwap: true;
  /** Present when the package's held-out good images are too few for this rate to be firm. */
  caution?: string;
}

/** Held-out good images above the threshold below which it rests on the top few scores (the factory's FIRM, rule.py). */
const FIRM = 5;

/** Why a rate is not firm on this calibration (too few held-out good images would lie above its threshold), or undefined. */
function rateCaution(heldOutGood: number, rate: number): string | undefined {
  if (heldOutGood * rate >= FIRM) return undefined;
  return `only ${heldOutGood} held-out good images calibrated this package: about ${(heldOutGood * rate).toFixed(1)} of them lie above the threshold for ${rate}, so the rate on the line may differ a lot`;
}

/**
 * An operator's thresholds outrank a package's calibrated ones: they stay over model swaps until the node restarts
 * (a new package may bring a new calibration, so each swap's audit event records the value it set aside). The
 * early-exit threshold stays as a value; an anomaly false-alarm rate stays as a rate, which each package's own good-
 * score quantiles turn into its threshold.
 */
export class ThresholdCommand {
  private override: ThresholdOverride | null = null;
  private rate: ThresholdOverride | null = null;

  constructor(private readonly audit?: AuditLog) {}

  set(engine: Engine, threshold: number, origin?: CommandOrigin): SetThresholdReply {
    const previous = engine.getSettings().threshold;
    const settings = engine.configure({ threshold });
    this.override = overrideOf(threshold, origin);
    this.audit?.event({ kind: 'config_changed', message: `early-exit threshold set to ${threshold} by command (was ${previous})`, details: { ...this.override, previous } });
    return { threshold, previous, source: 'command', at: this.override.at, keptOnModelSwap: true, settings };
  }

  setFalseAlarmRate(engine: Engine, rate: number, origin?: CommandOrigin): SetFalseAlarmRateReply {
    const threshold = setFalseAlarmRate(engine.task, rate, 'set-false-alarm-rate', 'E_CMD_UNSUPPORTED');
    this.rate = overrideOf(rate, origin);
    const { correlationId, keyId } = this.rate;
    const caution = rateCaution(engine.manifest.calibration.anomaly!.heldOutGood, rate);
    this.audit?.event({ kind: 'config_changed', message: `anomaly threshold ${threshold} for a false-alarm rate of ${rate} by command${caution ? `; caution: ${caution}` : ''}`, details: { rate, threshold, model: engine.model, correlationId, keyId } });
    return { falseAlarmRate: rate, threshold, keptOnModelSwap: true, ...(caution && { caution }) };
  }

  /** Applies the overrides, if any, to an engine about to be swapped in. */
  keep(next: Engine): void {
    this.keepRate(next);
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

  /**
   * The operator's rate on the next package's calibration. A package that cannot take it (not anomaly, or the rate
   * outside its calibrated quantiles) keeps its own threshold, and the audit log says why: an update is not refused.
   */
  private keepRate(next: Engine): void {
    const kept = this.rate;
    if (!kept) return;
    const { model, task } = next;
    const about = `false-alarm rate ${kept.value} (set by command at ${kept.at})`;
    const details = { rate: kept.value, source: kept.source, setAt: kept.at, model };
    let threshold: number;
    try {
      threshold = setFalseAlarmRate(task, kept.value, 'the rate', 'E_CMD_UNSUPPORTED');
    } catch (err) {
      this.audit?.event({ kind: 'config_changed', message: `${about} not kept over ${model.name} ${model.version}: ${errorMessage(err)}; its calibrated threshold applies`, details });
      return;
    }
    this.audit?.event({ kind: 'config_changed', message: `${about} kept over ${model.name} ${model.version}: anomaly threshold ${threshold}`, details: { ...details, threshold } });
  }
}

/** Who set it goes with the value: its audit event names the request and the key that authorised it. */
function overrideOf(value: number, origin: CommandOrigin | undefined): ThresholdOverride {
  return { value, source: 'command', at: new Date().toISOString(), correlationId: origin?.id ?? null, keyId: origin?.keyId ?? null };
}
