import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AlarmKind } from '../audit/health';
import type { Decision, StageTimingsUs } from '../engine/decision';
import type { EdgeNode } from './edge-node';

export interface AttachedMetrics {
  /** The node's own registry (never prom-client's global one): `await registry.metrics()` is the scrape. */
  registry: Registry;
  /** Stops following the node and empties the registry. */
  detach(): void;
}

const FRAME_STATUSES = ['decided', 'rejected', 'dropped'] as const;
const STAGES: ReadonlyArray<keyof StageTimingsUs> = ['trunk', 'base', 'gate', 'expert', 'total'];
/** Every alarm kind, so a cleared alarm reads 0 instead of vanishing (a Record keeps the list complete). */
const ALARM_KINDS = Object.keys({ router_collapse: 0, expert_starved: 0, drift: 0, early_exit_rate: 0 } satisfies Record<AlarmKind, 0>);
/** 0.1 ms to 100 ms, roughly three steps per decade, in seconds. */
const LATENCY_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

/** Whether a stage ran for this decision: the gate and experts are skipped on an early exit (and base-only). */
const stageRan = (d: Decision, stage: keyof StageTimingsUs) =>
  stage === 'gate' ? d.gate.length > 0 : stage === 'expert' ? d.experts.length > 0 : true;

/**
 * Prometheus metrics of one node. Per-decision figures (stage latencies, expert selections, early exits) follow
 * the node's `decision` events from the moment of attaching; frame accounting, outbox depth, alarms and the model
 * are read from `node.snapshot()` at each scrape, so they always equal what the node reports.
 */
export function attachMetrics(node: EdgeNode): AttachedMetrics {
  const registry = new Registry();
  const registers = [registry];

  new Counter({
    name: 'sgmoe_frames_total',
    help: 'Frames settled per source: decided, rejected (bad input) or dropped (backpressure)',
    labelNames: ['source', 'status'],
    registers,
    collect() {
      this.reset();
      for (const source of node.snapshot().sources) {
        for (const status of FRAME_STATUSES) this.inc({ source: source.name, status }, source[status]);
      }
    },
  });
  const latency = new Histogram({
    name: 'sgmoe_stage_latency_seconds',
    help: 'Wall time per decision and stage (in a micro-batch each sample gets an equal share); gate and expert only when they ran',
    labelNames: ['stage'],
    buckets: LATENCY_BUCKETS_S,
    registers,
  });
  const expertSelections = new Counter({
    name: 'sgmoe_expert_selections_total',
    help: 'Decisions that ran each expert (top-k counts every expert that ran)',
    labelNames: ['expert'],
    registers,
  });
  const earlyExits = new Counter({ name: 'sgmoe_early_exits_total', help: 'Decisions taken by the base branch alone (early exit)', registers });
  new Gauge({
    name: 'sgmoe_outbox_depth',
    help: 'MQTT messages waiting in the persistent outbox for the broker (absent without MQTT)',
    registers,
    collect() {
      this.reset();
      const depth = node.snapshot().outboxDepth;
      if (depth !== null) this.set(depth);
    },
  });
  new Gauge({
    name: 'sgmoe_alarms_active',
    help: 'Routing-health alarms currently raised, by kind',
    labelNames: ['kind'],
    registers,
    collect() {
      const active = node.snapshot().alarms;
      for (const kind of ALARM_KINDS) this.set({ kind }, active.filter((a) => a.kind === kind).length);
    },
  });
  new Gauge({
    name: 'sgmoe_faults_active',
    help: 'Device faults currently raised (a full disk, an ROI outside its frames), by code and source',
    labelNames: ['code', 'source'],
    registers,
    collect() {
      this.reset();
      for (const f of node.snapshot().faults) this.inc({ code: f.code, source: f.source ?? '' });
    },
  });
  new Gauge({
    name: 'sgmoe_model_info',
    help: 'The model package the node runs (always 1; name and version in the labels)',
    labelNames: ['name', 'version'],
    registers,
    collect() {
      this.reset();
      this.set(node.snapshot().model, 1);
    },
  });

  const onDecision = (_frame: unknown, d: Decision) => {
    for (const stage of STAGES) if (stageRan(d, stage)) latency.observe({ stage }, d.timingsUs[stage] / 1e6);
    for (const expert of d.experts) expertSelections.inc({ expert: String(expert) });
    if (d.earlyExit) earlyExits.inc();
  };
  node.on('decision', onDecision);

  return {
    registry,
    detach() {
      node.off('decision', onDecision);
      registry.clear();
    },
  };
}
