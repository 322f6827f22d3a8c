import type { Decision } from '../../engine/decision';
import type { Frame } from '../../ingest/frame';
import type { EdgeNode } from '../edge-node';
import { amplitudeSpectrum, type Spectrum } from './spectrum';

/** One decided window of a machine, as the condition timeline shows it. */
export interface ConditionPoint {
  frameId: string;
  /** When the node received the window (ms since epoch). */
  at: number;
  condition: string;
  score: number;
  /** The gate's top expert: the operating regime it recognised. */
  regimeExpert: number | null;
  unknownRegime: boolean;
}

export interface MachineCondition {
  /** The source's name: one machine (sensor) per source. */
  source: string;
  latest: ConditionPoint;
  /** The spectrum of the latest window, or null when its samples were not kept (not a signal frame). */
  spectrum: (Spectrum & { frameId: string }) | null;
  /** Oldest first, at most the view's capacity per machine. */
  timeline: ConditionPoint[];
}

export interface ConditionSnapshot {
  /** False for packages of another task: the page then leaves the condition panel out. */
  condition: boolean;
  labels: string[];
  /** The regime each expert covers (its majority speed in training), by expert index. */
  regimes: Array<string | null>;
  machines: MachineCondition[];
}

interface Machine {
  points: ConditionPoint[];
  samples: Float32Array | null;
  spectrum: MachineCondition['spectrum'];
}

interface RegimesField {
  regimes?: { experts?: Array<{ expert: number; speedRpm: string | null }> };
}

/**
 * The condition view of the dashboard: per machine (source), the timeline of its condition and regime from the
 * node's decisions, and the latest window's samples. The spectrum is computed when the page asks, not per window,
 * so the node's hot path only pays for keeping a reference.
 */
export class ConditionView {
  private readonly machines = new Map<string, Machine>();
  private readonly onDecision = (frame: Frame, d: Decision) => {
    const extra = d.extra;
    if (!extra || typeof extra.condition !== 'string') return;
    let machine = this.machines.get(frame.source);
    if (!machine) this.machines.set(frame.source, (machine = { points: [], samples: null, spectrum: null }));
    machine.points.push({
      frameId: frame.id,
      at: frame.receivedAt,
      condition: extra.condition,
      score: d.score,
      regimeExpert: typeof extra.regimeExpert === 'number' ? extra.regimeExpert : null,
      unknownRegime: extra.unknownRegime === true,
    });
    if (machine.points.length > this.capacity) machine.points.shift();
    machine.samples = frame.samples ?? null;
  };

  constructor(
    private readonly node: EdgeNode,
    readonly capacity = 300,
  ) {
    node.on('decision', this.onDecision);
  }

  snapshot(): ConditionSnapshot {
    const manifest = this.node.engine.manifest;
    const experts = (manifest as RegimesField).regimes?.experts ?? [];
    const regimes = manifest.parts.experts.map((_, e) => experts.find((x) => x.expert === e)?.speedRpm ?? null);
    const input = manifest.input;
    const machines = [...this.machines.entries()].map(([source, m]): MachineCondition => {
      const latest = m.points[m.points.length - 1];
      if (input.kind === 'signal' && m.samples && m.spectrum?.frameId !== latest.frameId && m.samples.length % input.channels === 0) {
        m.spectrum = { frameId: latest.frameId, ...amplitudeSpectrum(m.samples, input.channels, input.sampleRate) };
      }
      return { source, latest, spectrum: m.spectrum, timeline: [...m.points] };
    });
    return { condition: manifest.task === 'condition', labels: manifest.labels, regimes, machines };
  }

  close(): void {
    this.node.off('decision', this.onDecision);
  }
}
