/** A condition-monitoring alarm: raised or cleared for one machine (one source). */
export interface ConditionAlarm {
  kind: 'condition_change' | 'unknown_regime';
  state: 'raised' | 'cleared';
  machine: string;
  message: string;
  details: Record<string, unknown>;
}

interface MachineState {
  condition?: string;
  candidate?: string;
  candidateRun: number;
  unknown: boolean;
  unknownRun: number;
}

/**
 * Debounced alarms per machine: the condition changes once `windows` windows in a row agree on a new one (a first
 * condition other than `normal` counts as a change); the unknown-regime alarm is raised after `windows` flagged
 * windows in a row and cleared after as many unflagged ones. One stray window never raises anything.
 */
export class ConditionAlarms {
  private readonly machines = new Map<string, MachineState>();

  constructor(
    private readonly windows: number,
    private readonly normal?: string,
  ) {}

  observe(machine: string, condition: string, unknownRegime: boolean): ConditionAlarm[] {
    let s = this.machines.get(machine);
    if (!s) this.machines.set(machine, (s = { candidateRun: 0, unknown: false, unknownRun: 0 }));
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
            state: 'raised',
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
    return alarms;
  }
}
