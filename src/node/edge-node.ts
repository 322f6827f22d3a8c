import type { ActiveConditionAlarm } from '../maintenance/alarms';
import { EventEmitter } from 'node:events';
import type { AuditLog } from '../audit/audit-log';
import type { HealthAlarm } from '../audit/health';
import { decidedRecord, droppedRecord, rejectedRecord, type AuditRecord, type FrameInfo, type ModelRef } from '../audit/record';
import type { Decision } from '../engine/decision';
import type { Engine } from '../engine/engine';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { SDK_VERSION } from '../version';
import { inputSha256, type Frame } from '../ingest/frame';
import { askedPng } from '../ingest/raw-png';
import { windowPlace } from '../ingest/kinds/signal/window-source';
import type { PreprocessOptions } from '../ingest/preprocess';
import type { FrameOutcome, FrameSource } from '../ingest/source';
import type { HealthSample } from '../fleet/host';
import type { MqttTransport } from '../transport/client';
import { MicroBatcher } from './batcher';
import { BROKER_FAULT, DASHBOARD_FAULT, Faults, STORAGE_FAULT, brokerFault, dashboardFault, roiFault, roiFaultKey, storageFault, type NodeFault } from './faults';
import { closeAll } from './close';
import { Reporter } from './report';
import { FramePipeline, type SourceFailure } from './pipeline';
import { Settler } from './settle';
import { NodeStats, type NodeSnapshot, type Unavailable } from './stats';
import { ThresholdCommand, type SetFalseAlarmRateReply, type SetThresholdReply } from './threshold';
import type { CommandOrigin } from '../transport/commands';
import { within } from '../transport/bounded';

/** One source with the preprocessing options it needs (its ROI, fit, pad). */
export interface NodeSource {
  source: FrameSource;
  preprocess: PreprocessOptions;
}

export interface EdgeNodeParts {
  engine: Engine;
  sources: NodeSource[];
  audit?: AuditLog;
  /** Why the configured audit log could not be opened; every frame then counts as unaudited. */
  auditUnavailable?: SgmoeError;
  batch: { maxSize: number; maxWaitMs: number };
  /** Frames in preprocessing or waiting for their decision, per source. */
  window: number;
  /** Period of the health report on MQTT. */
  healthIntervalMs: number;
  logger?: Logger;
  /** The device's routing settings (config file), applied to every engine the node swaps in. */
  applyRouting?: (engine: Engine) => void;
  /** Wait before committing frames held on a full disk again (doubling from min to max). */
  commitRetryMs?: { min: number; max: number };
  /** Closed last on stop, after the transport said goodbye (the embedded broker, the outbox database). */
  onClosed?: () => Promise<void> | void;
  /** How long each source's stop may take before it is cut off (default SOURCE_STOP_MS). */
  sourceStopMs?: number;
}

/**
 * A source's stop that takes longer has hung (a decoder that ignores SIGTERM and keeps its pipes open, an RTSP teardown
 * that never ends): past it the source is cut off and the node stops without it. A camera decoder is killed 3 s after
 * its SIGTERM (DecoderProcess), so 10 s leaves room for that and a slow disk; it is well within the 45 s that the
 * systemd unit (examples/systemd) gives the whole stop, whose broker goodbye may take 10 s more.
 */
const SOURCE_STOP_MS = 10_000;

export interface NodeEvents {
  decision: [frame: Frame, decision: Decision];
  rejected: [frame: Frame, error: SgmoeError];
  dropped: [frame: Frame];
  swapped: [previous: { name: string; version: string }, next: { name: string; version: string }];
  /** A device fault raised or cleared (a full disk, an ROI outside a source's frames). */
  fault: [fault: NodeFault];
}

/** A dropped frame's row skips the hash: nothing of it is kept to review. */
const frameInfo = (frame: Frame, hashed: boolean): FrameInfo => ({
  frameId: frame.id,
  source: frame.source,
  receivedAt: frame.receivedAt,
  inputSha256: hashed ? inputSha256(frame) : undefined,
  window: windowPlace(frame),
});

/**
 * The edge node: sources → preprocessing → micro-batched engine → audit log and MQTT outbox. Every frame that
 * enters is settled exactly once (decided, rejected with a reason, or dropped by backpressure and counted), and
 * the engine can be swapped between two batches without losing or failing a frame.
 */
export class EdgeNode extends EventEmitter<NodeEvents> {
  private readonly batcher: MicroBatcher;
  private readonly log: Logger;
  private readonly stats: NodeStats;
  private readonly faults = new Faults();
  private readonly settler: Settler;
  private readonly reporter: Reporter;
  private transportPart: MqttTransport | undefined;
  private outboxUnavailable: Unavailable | undefined;
  private fleetStatus: Record<string, unknown> = {};
  private conditionAlarms: { active(): ActiveConditionAlarm[] } | undefined;
  private readonly threshold: ThresholdCommand;
  private readonly pipeline: FramePipeline;
  private pumps: Promise<SourceFailure | null>[] = [];
  private failures: SourceFailure[] = [];
  private started = false;
  private stopping: Promise<void> | null = null;

  constructor(private readonly parts: EdgeNodeParts) {
    super();
    this.log = (parts.logger ?? silentLogger).child({ module: 'node' });
    this.batcher = new MicroBatcher(parts.engine, parts.batch.maxSize, parts.batch.maxWaitMs);
    this.stats = new NodeStats(parts.engine.manifest.parts.experts.length, parts.engine.model);
    this.reporter = new Reporter({
      transport: () => this.transportPart,
      audit: parts.audit,
      snapshot: () => this.snapshot(),
      status: () => this.statusInfo(),
      logger: this.log,
    });
    this.settler = new Settler({
      audit: parts.audit,
      transport: () => this.transportPart,
      stats: this.stats,
      onCommit: (failure) => this.storageState(failure),
      logger: this.log,
      retryMs: parts.commitRetryMs,
    });
    this.threshold = new ThresholdCommand(parts.audit);
    this.pipeline = new FramePipeline({
      batcher: this.batcher,
      window: parts.window,
      logger: this.log,
      decided: (entry, frame, decision) => this.decide(entry, frame, decision),
      rejected: (entry, frame, err, model) => this.reject(entry, frame, err, model),
      abandoned: (entry, frame) => this.abandon(entry, frame),
    });
  }

  get engine(): Engine {
    return this.batcher.current;
  }

  /** The MQTT transport the node publishes through, once attached. */
  get transport(): MqttTransport | undefined {
    return this.transportPart;
  }

  get uptimeS(): number {
    return this.stats.uptimeS;
  }

  /**
   * Gives the node its MQTT transport, before `run` (the transport's commands need the node, so it comes after).
   * `outboxUnavailable`: why the configured outbox could not open and results wait in memory instead. An audit
   * database found unreadable and moved aside at start is announced on it, as an alarm.
   */
  attachTransport(transport: MqttTransport, outboxUnavailable?: SgmoeError): void {
    if (this.started) throw new SgmoeError('E_NODE_RUNNING', 'expected to attach the transport before the node runs, found it running');
    this.transportPart = transport;
    this.outboxUnavailable = outboxUnavailable;
    const recovered = this.parts.audit?.recovered;
    if (recovered) this.reporter.auditRecovered(recovered);
    transport.on('refused', (error) => this.changed(this.faults.raise(BROKER_FAULT, brokerFault(error))));
    transport.on('online', () => this.changed(this.faults.clear(BROKER_FAULT, 'the broker accepts the node again: what waited in the outbox is sent')));
  }

  /**
   * Starts every source and resolves when they have all ended (finite ones by themselves, the rest on stop). A node
   * runs once: its sources and store are let go on stop, so running again needs a new node.
   */
  async run(): Promise<void> {
    if (this.stopping) throw new SgmoeError('E_NODE_STOPPING', 'the node was stopped: expected a new node to run again (createEdgeNode)');
    if (this.started) throw new SgmoeError('E_NODE_RUNNING', 'the node is already running: expected run() once per node');
    this.started = true;
    const transport = this.transportPart;
    if (transport) {
      this.reporter.status();
      await transport.start();
    }
    if (this.stopping) return; // stopped while connecting: nothing was started
    this.parts.audit?.event({ kind: 'start', message: 'node started', details: { sdk: SDK_VERSION, sources: this.parts.sources.map((s) => s.source.name) } });
    this.reporter.start(this.parts.healthIntervalMs);
    this.pumps = this.parts.sources.map((s) => this.pipeline.pump(s));
    this.failures = (await Promise.all(this.pumps)).filter((f) => f !== null);
    await this.batcher.drain();
  }

  /** The sources that ended with an error in the last run (a node whose every source failed did not do its job). */
  get failedSources(): readonly SourceFailure[] {
    return this.failures;
  }

  /**
   * Graceful: sources stop, the frames they hold and those in flight finish, the audit log is flushed, the broker hears
   * we left, and the locks go last. A source whose stop fails, or does not end in time (it hung), keeps nothing open:
   * it is cut off, the rest stops in order, and stop rejects with the first failure once everything is closed.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping: finishing the frames in flight');
      // Frames held on a full disk stay with their source (in the inbox), to be taken at the next start.
      this.settler.release();
      this.pipeline.stop();
      const failures: unknown[] = await this.stopSources();
      // Should these fail, frames may still be decided: everything stays open and locked (the lesser harm), and stop rejects.
      await Promise.all(this.pumps);
      await this.batcher.drain();
      // Nothing decides any more: each part closes even when one before it fails, and the locks go after all of them.
      const closing = [
        () => this.reporter.stop(),
        () => {
          this.parts.audit?.event({ kind: 'stop', message: 'node stopped', details: { totals: this.snapshot().totals } });
          this.parts.audit?.close();
        },
        () => this.transportPart?.stop(),
        () => this.engine.dispose(),
      ];
      await closeAll(closing, this.log).catch((err: unknown) => failures.push(err));
      try {
        await this.parts.onClosed?.();
      } catch (err) {
        failures.push(err);
      }
      this.log.info({ totals: this.snapshot().totals }, 'stopped');
      if (failures.length > 0) throw failures[0];
    })();
    return this.stopping;
  }

  /**
   * Switches to another engine at a batch boundary (the fleet agent's EngineHost): frames already handed to the
   * old engine finish there, the next batch runs on the new one. The caller disposes the old engine. A threshold
   * an operator set at run time stays: the new package's calibrated value is recorded beside it.
   */
  async swap(next: Engine): Promise<{ previous: Engine }> {
    if (this.stopping) throw new SgmoeError('E_NODE_STOPPING', 'the node is stopping: expected a running node to swap models on');
    this.parts.applyRouting?.(next);
    this.threshold.keep(next);
    const previous = await this.batcher.swap(next);
    this.stats.modelChanged(next.manifest.parts.experts.length, next.model);
    this.reporter.status();
    this.notify('swapped', previous.model, next.model);
    return { previous };
  }

  /** The set-threshold command: applies now and over every package swapped in later, until the node restarts. */
  setThreshold(threshold: number, origin?: CommandOrigin): SetThresholdReply {
    return this.threshold.set(this.engine, threshold, origin);
  }

  /**
   * Moves the anomaly threshold to flag this share of good frames (the package's calibration quantiles), now and over
   * every package swapped in later, until the node restarts.
   */
  setFalseAlarmRate(rate: number, origin?: CommandOrigin): SetFalseAlarmRateReply {
    return this.threshold.setFalseAlarmRate(this.engine, rate, origin);
  }

  /** What the fleet agent's health watch reads (HealthProbe): running totals, recent latency, routing. */
  sample(): HealthSample {
    return { ...this.stats.sample(), routing: this.parts.audit?.health().window ?? null };
  }

  /** Condition-monitoring alarms (task condition), shown with the routing alarms wherever the node reports. */
  attachConditionAlarms(alarms: { active(): ActiveConditionAlarm[] }): void {
    this.conditionAlarms = alarms;
  }

  /** The fleet part of the retained status: the update running now, how the last one ended, the watch window. */
  setFleetStatus(info: Record<string, unknown>): void {
    this.fleetStatus = { ...info };
    this.reporter.status();
  }

  /** A frame the source dropped under backpressure: counted and audited, never silently lost. */
  recordDrop(frame: Frame): void {
    this.dropped(frame, new SgmoeError('E_BACKPRESSURE', 'dropped: the queue of this source was full'));
  }

  /**
   * An error a source reported itself: a decoded camera whose ROI does not fit its picture fails before any frame
   * exists, so the ROI fault is raised here as a rejected frame would (cleared by the source's next decided frame).
   */
  sourceError(source: string, error: SgmoeError): void {
    if (error.code === 'E_FRAME_ROI') this.changed(this.faults.raise(roiFaultKey(source), roiFault(source, error)));
  }

  /** The dashboard (started beside the node) could not start: a fault in the status, health and summary until restart. */
  dashboardFailed(error: SgmoeError): void {
    this.changed(this.faults.raise(DASHBOARD_FAULT, dashboardFault(error)));
  }

  /** Routing alarms from the audit log, published on the alarm topic as they are raised and cleared. */
  publishAlarm(alarm: HealthAlarm): void {
    this.reporter.routingAlarm(alarm);
  }

  snapshot(): NodeSnapshot {
    const health = this.parts.audit?.health();
    const transport = this.transportPart?.stats();
    return this.stats.snapshot({
      engine: this.engine,
      sources: this.parts.sources.map((s) => s.source),
      outboxDepth: transport ? transport.outbox.pending : null,
      outboxDropped: transport ? transport.outbox.dropped : null,
      outboxRecovered: transport?.outboxRecovered,
      audit: health && { alarms: health.alarms, unaudited: health.writer.failed + health.writer.overflow },
      auditUnavailable: this.parts.auditUnavailable,
      auditRecovered: this.parts.audit?.recovered,
      outboxUnavailable: this.outboxUnavailable,
      faults: this.faults.active(),
      conditionAlarms: this.conditionAlarms?.active() ?? [],
    });
  }

  private statusInfo(): Record<string, unknown> {
    const faults = this.faults.active();
    return {
      sdk: SDK_VERSION,
      model: this.engine.model,
      providers: this.engine.providerSummary(),
      ...this.fleetStatus,
      ...(faults.length > 0 ? { faults } : {}),
    };
  }

  /** Tells listeners (CLI, dashboard, SDK users); one that throws is logged and changes nothing for the frame. */
  private notify<K extends keyof NodeEvents>(event: K, ...args: NodeEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: NodeEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ event, err: errorMessage(err) }, 'a node event listener failed');
    }
  }

  private changed(fault: NodeFault | null): void {
    if (!fault) return;
    this.reporter.fault(fault);
    this.notify('fault', fault);
  }

  /** The disk alarm: raised when a commit fails, cleared by the first commit that goes through. */
  private storageState(failure: SgmoeError | null): void {
    if (failure) this.changed(this.faults.raise(STORAGE_FAULT, storageFault(failure)));
    else this.changed(this.faults.clear(STORAGE_FAULT, 'the audit log and the outbox are writable again: held frames are committed and settled'));
  }

  /**
   * Asks every source to stop, each even when another fails; one that fails, or does not stop in time
   * (E_SOURCE_STOP_TIMEOUT), is cut off from its pump at once.
   */
  private async stopSources(): Promise<SgmoeError[]> {
    const ms = this.parts.sourceStopMs ?? SOURCE_STOP_MS;
    const stopped = await Promise.allSettled(
      this.parts.sources.map(async (entry) => {
        const { name } = entry.source;
        try {
          await within(entry.source.stop(), ms, () => new SgmoeError('E_SOURCE_STOP_TIMEOUT', `source ${name} did not stop within ${(ms / 1000).toFixed(1)} s: cut off, the node stopped without it`, { source: name, ms }));
        } catch (err) {
          this.pipeline.cut(entry);
          throw err;
        }
      }),
    );
    return stopped.flatMap((outcome, i) => {
      if (outcome.status === 'fulfilled') return [];
      const { name } = this.parts.sources[i].source;
      const error =
        outcome.reason instanceof SgmoeError
          ? outcome.reason
          : new SgmoeError('E_SOURCE_FAILED', `source ${name} failed to stop: ${errorMessage(outcome.reason)}`, { source: name }, { cause: outcome.reason });
      this.log.error({ source: name, code: error.code, err: error.message }, 'a source failed to stop');
      return [error];
    });
  }

  /**
   * A frame its source yielded after its pump gave up on it (the node stopping, the source cut off). A source that
   * replays keeps it unsettled (a hot-folder file stays in the inbox for the next start, with no row), as frames held
   * on a full disk are at a stop. A live source's frame cannot wait: dropped, as under backpressure (counted by its
   * source, its row written while the audit log is open, counted as unaudited after).
   */
  private abandon(entry: NodeSource, frame: Frame): void {
    const { source } = entry;
    if (source.replays) {
      this.log.warn({ source: source.name, frameId: frame.id }, 'a frame came after the node stopped taking frames: left with its source for the next start');
      return;
    }
    this.log.warn({ source: source.name, frameId: frame.id }, 'a frame came after the node stopped taking frames: dropped');
    const error = new SgmoeError('E_NODE_STOPPING', 'dropped: the node stopped before it could decide this frame');
    this.dropped(frame, error);
    source.settle(frame, { status: 'dropped', error }).catch((err: unknown) => this.log.error({ frameId: frame.id, code: errorCode(err), err: errorMessage(err) }, 'could not settle a frame with its source'));
  }

  private dropped(frame: Frame, error: SgmoeError): void {
    this.parts.audit?.record(droppedRecord(frameInfo(frame, false), { code: error.code, message: error.message }, this.engine.model));
    this.notify('dropped', frame);
  }

  private decide(entry: NodeSource, frame: Frame, decision: Decision): Promise<void> {
    this.stats.decision(decision);
    const { source } = entry;
    this.changed(this.faults.clear(roiFaultKey(source.name), `source ${source.name}: its frames fit the ROI again`));
    const record = decidedRecord(decision, frameInfo(frame, true), Date.now());
    this.notify('decision', frame, decision);
    return this.commitThenSettle(source, frame, record, { status: 'decided' }, decision);
  }

  private reject(entry: NodeSource, frame: Frame, err: unknown, model: ModelRef): Promise<void> {
    const error = err instanceof SgmoeError ? err : new SgmoeError('E_ENGINE_FAILED', errorMessage(err), undefined, { cause: err });
    if (error.category !== 'bad-input') this.stats.engineError();
    if (error.code === 'E_FRAME_ROI') this.changed(this.faults.raise(roiFaultKey(entry.source.name), roiFault(entry.source.name, error)));
    this.log.warn({ source: frame.source, frameId: frame.id, code: error.code, err: error.message }, 'frame rejected');
    const record = rejectedRecord(frameInfo(frame, true), { code: error.code, message: error.message }, model);
    this.notify('rejected', frame, error);
    return this.commitThenSettle(entry.source, frame, record, { status: 'rejected', error });
  }

  /**
   * Routing health sees the outcome now; the settler commits its row and result, then settles the frame. A raw frame
   * that a listener asked a PNG of (the frame store keeping it, the dashboard holding it for review) has its row name
   * that PNG's sha256, once encoded aside: the bytes a verdict on it binds to and the export writes.
   */
  private commitThenSettle(source: FrameSource, frame: Frame, record: AuditRecord, outcome: FrameOutcome, decision?: Decision): Promise<void> {
    this.parts.audit?.observe(record);
    const named = askedPng(frame)?.then((png) => {
      if (png) record.frame.inputSha256 = png.sha256;
    });
    return this.settler.settle({ source, frame, record, outcome, decision, named });
  }
}

