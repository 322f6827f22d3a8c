import { EventEmitter } from 'node:events';
import type { AuditLog } from '../audit/audit-log';
import type { HealthAlarm } from '../audit/health';
import { decidedRecord, droppedRecord, rejectedRecord, type FrameInfo, type ModelRef } from '../audit/record';
import type { Decision } from '../engine/decision';
import type { Engine } from '../engine/engine';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import type { Frame } from '../ingest/frame';
import { preparerFor, type FramePreparer } from '../ingest/kinds';
import type { PreprocessOptions } from '../ingest/preprocess';
import { sha256Hex } from '../model/integrity';
import type { ManifestInput } from '../model/manifest';
import type { FrameOutcome, FrameSource } from '../ingest/source';
import type { HealthSample } from '../fleet/host';
import type { CommandHandlers } from '../transport/commands';
import type { MqttTransport } from '../transport/client';
import { MicroBatcher } from './batcher';
import { LatencyWindow } from './latency';

/** Recent decisions behind the latency percentiles and frames/s. */
const LATENCY_WINDOW = 1000;

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
  transport?: MqttTransport;
  batch: { maxSize: number; maxWaitMs: number };
  /** Frames in preprocessing or waiting for their decision, per source. */
  window: number;
  /** Period of the health report on MQTT. */
  healthIntervalMs: number;
  logger?: Logger;
  /** The device's routing settings (config file), applied to every engine the node swaps in. */
  applyRouting?: (engine: Engine) => void;
  /** Closed last on stop, after the transport said goodbye (the embedded broker, the outbox database). */
  onClosed?: () => Promise<void> | void;
}

/** Per source, at every moment: ingested = decided + rejected + dropped + pending. */
export interface SourceAccount {
  name: string;
  kind: string;
  ingested: number;
  decided: number;
  rejected: number;
  dropped: number;
  pending: number;
  errors: number;
}

export interface NodeSnapshot {
  model: { name: string; version: string };
  settings: ReturnType<Engine['getSettings']>;
  providers: Record<string, string>;
  sources: SourceAccount[];
  totals: Omit<SourceAccount, 'name' | 'kind'>;
  earlyExitRate: number | null;
  expertShares: number[];
  latencyUs: { p50: number; p99: number } | null;
  framesPerSecond: number;
  outboxDepth: number | null;
  /** Decided frames the outbox could not store (they are in the audit log). */
  unpublished: number;
  /** Frames whose audit row could not be written (no audit log, a full disk, an overflowing writer). */
  unaudited: number;
  /** Why the audit log is missing, when it is. */
  auditUnavailable: { code: string; message: string } | null;
  alarms: HealthAlarm[];
  uptimeS: number;
}

export interface NodeEvents {
  decision: [frame: Frame, decision: Decision];
  rejected: [frame: Frame, error: SgmoeError];
  dropped: [frame: Frame];
  swapped: [previous: { name: string; version: string }, next: { name: string; version: string }];
}

const frameInfo = (frame: Frame, bytes?: Buffer): FrameInfo => ({
  frameId: frame.id,
  source: frame.source,
  receivedAt: frame.receivedAt,
  inputSha256: bytes ? sha256Hex(bytes) : undefined,
});

/**
 * The edge node: sources → preprocessing → micro-batched engine → audit log and MQTT outbox. Every frame that
 * enters is settled exactly once (decided, rejected with a reason, or dropped by backpressure and counted), and
 * the engine can be swapped between two batches without losing or failing a frame.
 */
export class EdgeNode extends EventEmitter<NodeEvents> {
  private readonly batcher: MicroBatcher;
  private readonly log: Logger;
  private latency = new LatencyWindow(LATENCY_WINDOW);
  private readonly startedAt = Date.now();
  /** Per model input spec, then per source: a swap to another input size gets fresh preprocessing. */
  private readonly preprocessors = new WeakMap<ManifestInput, Map<NodeSource, FramePreparer>>();
  private decided = 0;
  /** Frames the engine failed on (bad input excluded): the error rate a model update is judged by. */
  private engineErrors = 0;
  private update: Record<string, unknown> | null = null;
  private earlyExits = 0;
  private expertCounts: number[];
  private pumps: Promise<void>[] = [];
  private stopping: Promise<void> | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private settling: Settling[] = [];
  /** Decisions the outbox could not store (e.g. a full disk); they are still in the audit log. */
  private unpublished = 0;

  constructor(private readonly parts: EdgeNodeParts) {
    super();
    this.log = (parts.logger ?? silentLogger).child({ module: 'node' });
    this.batcher = new MicroBatcher(parts.engine, parts.batch.maxSize, parts.batch.maxWaitMs);
    this.expertCounts = parts.engine.manifest.parts.experts.map(() => 0);
  }

  get engine(): Engine {
    return this.batcher.current;
  }

  /** Handlers for MQTT commands; `update` is added by the fleet agent when one is configured. */
  commandHandlers(config: () => unknown): CommandHandlers {
    return {
      ping: () => ({ pong: true, model: this.engine.model, uptimeS: (Date.now() - this.startedAt) / 1000 }),
      getConfig: () => ({ config: config(), settings: this.engine.getSettings(), model: this.engine.model }),
      setThreshold: (threshold) => {
        const settings = this.engine.configure({ threshold });
        this.parts.audit?.event({ kind: 'config_changed', message: `early-exit threshold set to ${threshold}`, details: { threshold } });
        return { settings };
      },
    };
  }

  /** Starts every source and resolves when they have all ended (finite ones by themselves, the rest on stop). */
  async run(): Promise<void> {
    const { transport, audit } = this.parts;
    if (transport) {
      transport.setStatusInfo(this.statusInfo());
      await transport.start();
    }
    if (this.stopping) return; // stopped while connecting: nothing was started
    audit?.event({ kind: 'start', message: 'node started', details: { sources: this.parts.sources.map((s) => s.source.name) } });
    this.healthTimer = setInterval(() => this.publishHealth(), this.parts.healthIntervalMs);
    this.healthTimer.unref();
    this.pumps = this.parts.sources.map((s) => this.pump(s));
    await Promise.all(this.pumps);
    await this.batcher.drain();
  }

  /** Graceful: sources stop, frames in flight finish, the audit log is flushed, the broker hears we left. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping: finishing the frames in flight');
      await Promise.all(this.parts.sources.map((s) => s.source.stop()));
      await Promise.all(this.pumps);
      await this.batcher.drain();
      if (this.healthTimer) clearInterval(this.healthTimer);
      this.publishHealth();
      this.parts.audit?.event({ kind: 'stop', message: 'node stopped', details: { totals: this.snapshot().totals } });
      this.parts.audit?.close();
      await this.parts.transport?.stop();
      await this.engine.dispose();
      await this.parts.onClosed?.();
      this.log.info({ totals: this.snapshot().totals }, 'stopped');
    })();
    return this.stopping;
  }

  /**
   * Switches to another engine at a batch boundary (the fleet agent's EngineHost): frames already handed to the
   * old engine finish there, the next batch runs on the new one. The caller disposes the old engine.
   */
  async swap(next: Engine): Promise<{ previous: Engine }> {
    if (this.stopping) throw new SgmoeError('E_NODE_STOPPING', 'the node is stopping: expected a running node to swap models on');
    this.parts.applyRouting?.(next);
    const previous = await this.batcher.swap(next);
    this.expertCounts = next.manifest.parts.experts.map(() => 0);
    this.latency = new LatencyWindow(LATENCY_WINDOW);
    this.parts.transport?.setStatusInfo(this.statusInfo());
    this.notify('swapped', previous.model, next.model);
    return { previous };
  }

  /** What the fleet agent's health watch reads (HealthProbe): running totals, recent latency, routing. */
  sample(): HealthSample {
    return {
      frames: this.decided + this.engineErrors,
      errors: this.engineErrors,
      latencyP99Us: this.latency.percentiles()?.p99 ?? null,
      routing: this.parts.audit?.health().window ?? null,
    };
  }

  /** What the retained status message says besides online/offline: the model, where it runs, any update. */
  setUpdateStatus(update: Record<string, unknown>): void {
    this.update = update;
    this.parts.transport?.setStatusInfo(this.statusInfo());
  }

  /** Tells listeners (CLI, dashboard, SDK users); one that throws is logged and changes nothing for the frame. */
  private notify<K extends keyof NodeEvents>(event: K, ...args: NodeEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: NodeEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ event, err: errorMessage(err) }, 'a node event listener failed');
    }
  }

  /** A frame the source dropped under backpressure: counted and audited, never silently lost. */
  recordDrop(frame: Frame): void {
    this.parts.audit?.record(
      droppedRecord(frameInfo(frame), { code: 'E_BACKPRESSURE', message: 'dropped: the queue of this source was full' }, this.engine.model),
    );
    this.notify('dropped', frame);
  }

  /** Routing alarms from the audit log, published on the health topic as they are raised and cleared. */
  publishAlarm(alarm: HealthAlarm): void {
    this.toOutbox('alarm', () => this.parts.transport?.publishAlarm({
      severity: alarm.kind === 'router_collapse' && alarm.state === 'raised' ? 'critical' : 'warning',
      code: `E_ROUTING_${alarm.kind.toUpperCase()}`,
      message: alarm.message,
      details: { state: alarm.state, value: alarm.value, bound: alarm.bound, experts: alarm.experts },
    }));
  }

  /** The outbox can fail (a full disk): the node logs it, counts it, and keeps deciding. */
  private toOutbox(what: string, put: () => unknown): void {
    try {
      put();
    } catch (err) {
      this.unpublished++;
      this.log.error({ what, code: errorCode(err), err: errorMessage(err) }, 'not queued for MQTT');
    }
  }

  snapshot(): NodeSnapshot {
    const sources = this.parts.sources.map(({ source }): SourceAccount => {
      const s = source.stats();
      return {
        name: s.name,
        kind: s.kind,
        ingested: s.frames,
        decided: s.decided,
        rejected: s.rejected,
        dropped: s.dropped,
        pending: s.frames - s.decided - s.rejected - s.dropped,
        errors: s.errors,
      };
    });
    const sum = (k: keyof Omit<SourceAccount, 'name' | 'kind'>) => sources.reduce((a, s) => a + s[k], 0);
    const routed = this.expertCounts.reduce((a, b) => a + b, 0);
    const health = this.parts.audit?.health();
    return {
      model: this.engine.model,
      settings: this.engine.getSettings(),
      providers: this.engine.providerSummary(),
      sources,
      totals: { ingested: sum('ingested'), decided: sum('decided'), rejected: sum('rejected'), dropped: sum('dropped'), pending: sum('pending'), errors: sum('errors') },
      earlyExitRate: this.decided === 0 ? null : this.earlyExits / this.decided,
      expertShares: this.expertCounts.map((c) => (routed === 0 ? 0 : c / routed)),
      latencyUs: this.latency.percentiles(),
      framesPerSecond: this.latency.rate(),
      outboxDepth: this.parts.transport ? this.parts.transport.stats().outbox.pending : null,
      unpublished: this.unpublished,
      unaudited: health ? health.writer.failed + health.writer.overflow : this.parts.auditUnavailable ? sum('decided') + sum('rejected') + sum('dropped') : 0,
      auditUnavailable: this.parts.auditUnavailable ? { code: this.parts.auditUnavailable.code, message: this.parts.auditUnavailable.message } : null,
      alarms: health?.alarms ?? [],
      uptimeS: (Date.now() - this.startedAt) / 1000,
    };
  }

  private statusInfo(): Record<string, unknown> {
    return { model: this.engine.model, providers: this.engine.providerSummary(), ...(this.update ? { update: this.update } : {}) };
  }

  private publishHealth(): void {
    const { transport, audit } = this.parts;
    if (!transport) return;
    const snap = this.snapshot();
    const health = audit?.health();
    this.toOutbox('health', () =>
      transport.publishHealth({
        counters: { ...snap.totals, unpublished: snap.unpublished, unaudited: snap.unaudited },
        routing: {
          model: snap.model,
          earlyExitRate: snap.earlyExitRate,
          expertShares: snap.expertShares,
          latencyUs: snap.latencyUs,
          ...(health ? { window: health.window, allTime: health.allTime, alarms: health.alarms } : {}),
        },
      }),
    );
  }

  private preprocessorFor(source: NodeSource): FramePreparer {
    const spec = this.engine.manifest.input;
    let bySource = this.preprocessors.get(spec);
    if (!bySource) this.preprocessors.set(spec, (bySource = new Map()));
    let pre = bySource.get(source);
    if (!pre) bySource.set(source, (pre = preparerFor(spec, source.preprocess)));
    return pre;
  }

  /**
   * Pulls frames from one source, keeps up to `window` of them in flight (preprocessing runs concurrently on
   * sharp's threads) and hands them to the batcher in arrival order.
   */
  private async pump(entry: NodeSource): Promise<void> {
    const { source } = entry;
    const inFlight = new Set<Promise<void>>();
    let handedOver: Promise<unknown> = Promise.resolve();
    try {
      for await (const frame of source) {
        // Handlers attach at once: a frame that fails to decode while the one before is still being prepared
        // must be rejected in its turn, not become an unhandled rejection.
        const prepared = this.preprocessorFor(entry)
          .toTensor(frame)
          .then(
            (tensor) => ({ tensor }),
            (error: unknown) => ({ error }),
          );
        // The next frame's hand-over waits for this hand-over (arrival order), not for this decision.
        const handed = handedOver.then(() => prepared).then((p): Handed => ('error' in p ? p : { decision: this.submit(p.tensor, frame.id) }));
        handedOver = handed;
        const model = this.engine.model;
        const done: Promise<void> = this.finish(entry, frame, handed, model).finally(() => inFlight.delete(done));
        inFlight.add(done);
        if (inFlight.size >= this.parts.window) await Promise.race(inFlight);
      }
    } catch (err) {
      this.log.error({ source: source.name, code: errorCode(err), err: errorMessage(err) }, 'source failed');
    }
    await Promise.all(inFlight);
  }

  /** A decision promise that is never an unhandled rejection (it is awaited later, in the frame's turn). */
  private submit(tensor: Float32Array, frameId: string): Promise<Decision> {
    const decision = this.batcher.submit(tensor, frameId);
    decision.catch(() => undefined);
    return decision;
  }

  /** One frame's end: decided or rejected, exactly once, whatever a listener, the audit log or the outbox throws. */
  private async finish(entry: NodeSource, frame: Frame, handed: Promise<Handed>, model: ModelRef): Promise<void> {
    const h = await handed;
    let decision: Decision;
    try {
      if ('error' in h) throw h.error;
      decision = await this.decisionOf(entry, frame, h.decision);
    } catch (err) {
      return this.reject(entry, frame, err, model);
    }
    return this.decide(entry, frame, decision);
  }

  /** The frame's decision; a frame prepared for a model swapped out meanwhile is prepared again for the new one. */
  private async decisionOf(entry: NodeSource, frame: Frame, decision: Promise<Decision>): Promise<Decision> {
    try {
      return await decision;
    } catch (err) {
      if (errorCode(err) !== 'E_TENSOR_STALE') throw err;
      return this.batcher.submit(await this.preprocessorFor(entry).toTensor(frame), frame.id);
    }
  }

  private decide(entry: NodeSource, frame: Frame, decision: Decision): Promise<void> {
    this.decided++;
    if (decision.earlyExit) this.earlyExits++;
    if (decision.expert !== null && decision.expert < this.expertCounts.length) this.expertCounts[decision.expert]++;
    this.latency.add(decision.timingsUs.total);
    this.parts.audit?.record(decidedRecord(decision, frameInfo(frame, frame.bytes), Date.now()));
    this.notify('decision', frame, decision);
    return this.commitThenSettle({ entry, frame, decision, outcome: { status: 'decided' } });
  }

  private reject(entry: NodeSource, frame: Frame, err: unknown, model: ModelRef): Promise<void> {
    const error = err instanceof SgmoeError ? err : new SgmoeError('E_ENGINE_FAILED', errorMessage(err), undefined, { cause: err });
    if (error.category !== 'bad-input') this.engineErrors++;
    this.log.warn({ source: frame.source, frameId: frame.id, code: error.code, err: error.message }, 'frame rejected');
    this.parts.audit?.record(rejectedRecord(frameInfo(frame, frame.bytes), { code: error.code, message: error.message }, model));
    this.notify('rejected', frame, error);
    return this.commitThenSettle({ entry, frame, outcome: { status: 'rejected', error } });
  }

  /**
   * A frame is settled with its source (a hot-folder file moves to done/) only after its audit row and its MQTT
   * result are committed: a kill at any moment leaves every settled frame audited and queued, and every other
   * frame to be taken again. The outcomes of one event-loop turn (one engine batch) share one commit.
   */
  private commitThenSettle(item: Omit<Settling, 'done'>): Promise<void> {
    return new Promise((done) => {
      if (this.settling.push({ ...item, done }) === 1) setImmediate(() => void this.commitTurn());
    });
  }

  private async commitTurn(): Promise<void> {
    const turn = this.settling;
    this.settling = [];
    this.parts.audit?.flush();
    const results = turn.flatMap((t) => (t.decision ? [{ decision: t.decision, frame: { source: t.frame.source, ts: new Date() } }] : []));
    if (results.length > 0 && this.parts.transport) {
      try {
        this.parts.transport.publishResults(results);
      } catch (err) {
        // The outbox could not store them (disk full...): the frames are decided and audited; count what MQTT misses.
        this.unpublished += results.length;
        this.log.error({ code: errorCode(err), err: errorMessage(err), results: results.length }, 'results not queued for MQTT');
      }
    }
    await Promise.all(
      turn.map((t) =>
        t.entry.source
          .settle(t.frame, t.outcome)
          .catch((err: unknown) => this.log.error({ frameId: t.frame.id, code: errorCode(err), err: errorMessage(err) }, 'could not settle a frame with its source'))
          .finally(t.done),
      ),
    );
  }
}

type Handed = { decision: Promise<Decision> } | { error: unknown };

interface Settling {
  entry: NodeSource;
  frame: Frame;
  decision?: Decision;
  outcome: FrameOutcome;
  done: () => void;
}
