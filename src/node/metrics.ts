import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AlarmKind } from '../audit/health';
import type { Decision, StageTimingsUs } from '../engine/decision';
import { SDK_VERSION } from '../version';
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
const ALARM_KINDS = Object.keys({ router_collapse: 0, expert_starved: 0, drift: 0, early_exit_rate: 0, anomaly_rate: 0, score_drift: 0 } satisfies Record<AlarmKind, 0>);
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
    help: 'Decisions that ran each expert since start (top-k counts every expert that ran)',
    labelNames: ['expert'],
    registers,
  });
  const earlyExits = new Counter({ name: 'sgmoe_early_exits_total', help: 'Decisions taken by the base branch alone (early exit) since start', registers });
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
  new Counter({
    name: 'sgmoe_outbox_dropped_total',
    help: 'Results, rejections and health reports the full outbox dropped, the oldest first (mqtt.outbox.maxResults), over the outbox file\'s life (0 without MQTT)',
    registers,
    collect() {
      this.reset();
      const dropped = node.snapshot().outboxDropped;
      if (dropped !== null) this.inc(dropped);
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
    name: 'sgmoe_condition_alarms_active',
    help: 'Condition-monitoring alarms currently raised (a machine out of its normal condition, in an unknown regime), by kind and machine',
    labelNames: ['kind', 'machine'],
    registers,
    collect() {
      this.reset();
      for (const a of node.snapshot().conditionAlarms) this.set({ kind: a.kind, machine: a.machine }, 1);
    },
  });
  new Gauge({
    name: 'sgmoe_faults_active',
    help: 'Device faults currently raised (a full disk, an ROI outside its frames, a broker refusing the node), by code and source',
    labelNames: ['code', 'source'],
    registers,
    collect() {
      this.reset();
      for (const f of node.snapshot().faults) this.inc({ code: f.code, source: f.source ?? '' });
    },
  });
  // The node's two labelled spans, as the summary and the dashboard show them (counters above run since start).
  const spans = () => {
    const { sinceStart, sinceModel } = node.snapshot().windows;
    return [
      { window: 'since_start', stats: sinceStart },
      { window: 'since_model', stats: sinceModel },
    ];
  };
  new Gauge({
    name: 'sgmoe_window_decisions',
    help: 'Decisions since start (window="since_start") and since the current model was loaded or swapped in (window="since_model")',
    labelNames: ['window'],
    registers,
    collect() {
      for (const { window, stats } of spans()) this.set({ window }, stats.decided);
    },
  });
  new Gauge({
    name: 'sgmoe_window_early_exit_ratio',
    help: 'Share of decisions taken by the base branch alone, per window (absent while the window holds no decision)',
    labelNames: ['window'],
    registers,
    collect() {
      this.reset();
      for (const { window, stats } of spans()) if (stats.earlyExitRate !== null) this.set({ window }, stats.earlyExitRate);
    },
  });
  new Gauge({
    name: 'sgmoe_window_expert_share',
    help: 'Each expert\'s share of the decisions that ran an expert, per window (absent while none did)',
    labelNames: ['window', 'expert'],
    registers,
    collect() {
      this.reset();
      for (const { window, stats } of spans()) {
        if (stats.routed > 0) stats.expertShares.forEach((share, expert) => this.set({ window, expert: String(expert) }, share));
      }
    },
  });
  new Gauge({
    name: 'sgmoe_window_latency_seconds',
    help: 'Engine latency per frame over the last 1000 decisions of each window, by quantile',
    labelNames: ['window', 'quantile'],
    registers,
    collect() {
      this.reset();
      for (const { window, stats } of spans()) {
        if (!stats.latencyUs) continue;
        this.set({ window, quantile: '0.5' }, stats.latencyUs.p50 / 1e6);
        this.set({ window, quantile: '0.99' }, stats.latencyUs.p99 / 1e6);
      }
    },
  });
  new Gauge({
    name: 'sgmoe_build_info',
    help: 'The sgmoe-edge SDK the node runs (always 1; its version in the label)',
    labelNames: ['version'],
    registers,
  }).set({ version: SDK_VERSION }, 1);
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
