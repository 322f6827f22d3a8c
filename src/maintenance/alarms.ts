/** A condition-monitoring alarm: raised or cleared for one machine (one source). */
export interface ConditionAlarm {
  kind: 'condition_change' | 'unknown_regime';
  state: 'raised' | 'cleared';
  machine: string;
  message: string;
  details: Record<string, unknown>;
}

/** An alarm raised now for one machine: what the node's snapshot, summary, health report and dashboard show. */
export interface ActiveConditionAlarm {
  kind: ConditionAlarm['kind'];
  machine: string;
  message: string;
  /** When it was raised (ms since epoch). */
  since: number;
}

interface MachineState {
  condition?: string;
  candidate?: string;
  candidateRun: number;
  unknown: boolean;
  unknownRun: number;
  /** The alarms raised and not cleared, by kind. */
  active: Map<ConditionAlarm['kind'], ActiveConditionAlarm>;
}

/**
 * Debounced alarms per machine: the condition changes once `windows` windows in a row agree on a new one (a first
 * condition other than `normal` counts as a change); a change to another condition than `normal` raises the
 * condition alarm, a change back to `normal` clears it. The unknown-regime alarm is raised after `windows` flagged
 * windows in a row and cleared after as many unflagged ones. One stray window never raises anything.
 */
export class ConditionAlarms {
  private readonly machines = new Map<string, MachineState>();

  constructor(
    private readonly windows: number,
    private readonly normal?: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The alarms raised now, machine by machine. */
  active(): ActiveConditionAlarm[] {
    return [...this.machines.values()].flatMap((s) => [...s.active.values()]);
  }

  observe(machine: string, condition: string, unknownRegime: boolean): ConditionAlarm[] {
    let s = this.machines.get(machine);
    if (!s) this.machines.set(machine, (s = { candidateRun: 0, unknown: false, unknownRun: 0, active: new Map() }));
    const alarms: ConditionAlarm[] = [];

    if (condition === s.condition) {
      s.candidate = undefined;
      s.candidateRun = 0;
    } else {
      s.candidateRun = condition === s.candidate ? s.candidateRun + 1 : 1;
      s.candidate = condition;
      if (s.candidateRun >= this.windows) {
        const from = s.condition;
        s.condition = condition;
        s.candidate = undefined;
        s.candidateRun = 0;
        if (from !== undefined || condition !== this.normal) {
          alarms.push({
            kind: 'condition_change',
            state: condition === this.normal ? 'cleared' : 'raised',
            machine,
            message: `${machine}: condition ${from ?? 'unknown'} -> ${condition} (${this.windows} windows in a row)`,
            details: { from: from ?? null, to: condition, windows: this.windows },
          });
        }
      }
    }

    s.unknownRun = unknownRegime === s.unknown ? 0 : s.unknownRun + 1;
    if (s.unknownRun >= this.windows) {
      s.unknown = unknownRegime;
      s.unknownRun = 0;
      alarms.push({
        kind: 'unknown_regime',
        state: unknownRegime ? 'raised' : 'cleared',
        machine,
        message: unknownRegime
          ? `${machine}: running in a regime no expert was trained on (${this.windows} windows in a row with low gate confidence)`
          : `${machine}: back in a known regime (${this.windows} windows in a row)`,
        details: { windows: this.windows },
      });
    }
    for (const alarm of alarms) {
      if (alarm.state === 'raised') s.active.set(alarm.kind, { kind: alarm.kind, machine, message: alarm.message, since: this.now() });
      else s.active.delete(alarm.kind);
    }
    return alarms;
  }
}
