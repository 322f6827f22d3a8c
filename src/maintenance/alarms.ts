/** A condition-monitoring alarm: raised or cleared for one machine (one source). */
export interface ConditionAlarm {
  kind: 'condition_change' | 'unknown_regime';
  state: 'raised' | 'cleared';
  machine: string;
  message: string;
  details: Record<string, unknown>;
}

/** How a machine's alarm is named wherever alarms are listed (audit stats, fleet status, the run summary). */
export const machineAlarmName = (kind: string, machine: string): string => `${kind} (${machine})`;

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

  /**
   * Takes up the alarms an earlier run raised and never cleared (from the audit log), so this run clears them when
   * their machine is back, rather than leaving them open in the log for ever.
   */
  restore(open: ReadonlyArray<{ since: number; message: string; details: Record<string, unknown> | null }>): void {
    for (const e of open) {
      const { kind, machine, to } = e.details ?? {};
      if (typeof machine !== 'string' || (kind !== 'condition_change' && kind !== 'unknown_regime')) continue;
      const s = this.machine(machine);
      if (kind === 'condition_change' && typeof to === 'string') s.condition = to;
      if (kind === 'unknown_regime') s.unknown = true;
      s.active.set(kind, { kind, machine, message: e.message, since: e.since });
    }
  }

  /** The alarms raised now, machine by machine. */
  active(): ActiveConditionAlarm[] {
    return [...this.machines.values()].flatMap((s) => [...s.active.values()]);
  }

  observe(machine: string, condition: string, unknownRegime: boolean): ConditionAlarm[] {
    const s = this.machine(machine);
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
      // A machine going from one fault to another stays out of normal since it first left it.
      const since = s.active.get(alarm.kind)?.since ?? this.now();
      if (alarm.state === 'raised') s.active.set(alarm.kind, { kind: alarm.kind, machine, message: alarm.message, since });
      else s.active.delete(alarm.kind);
    }
    return alarms;
  }

  private machine(name: string): MachineState {
    let s = this.machines.get(name);
    if (!s) this.machines.set(name, (s = { candidateRun: 0, unknown: false, unknownRun: 0, active: new Map() }));
    return s;
  }
}
