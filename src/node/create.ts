import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AuditLog } from '../audit/audit-log';
import { FrameStore, framesDirOf } from '../audit/frame-store';
import { Engine } from '../engine/engine';
import { detectHost } from '../engine/host';
import { listDeviceProfiles, loadDeviceProfile, pickProfile, type DeviceProfile } from '../engine/profile';
import { SgmoeError, errorMessage, type ErrorCode } from '../errors';
import { silentLogger, type Logger } from '../log';
import { redact, redactText } from '../redact';
import { setFalseAlarmRate, type AnomalyFields } from '../engine/tasks';
import { inputSha256, type Frame } from '../ingest/frame';
import { pngOf } from '../ingest/raw-png';
import { DEFAULT_DECODER, type DecoderSettings } from '../ingest/decoder/settings';
import { framesFor } from '../ingest/kinds';
import { openSource } from '../ingest/open';
import type { SettledBefore, FrameSource } from '../ingest/source';
import { EmbeddedBroker } from '../transport/broker';
import { MqttTransport } from '../transport/client';
import { clientIdOf, connectOptionsFor, parseTransportConfig, type TransportConfig } from '../transport/config';
import { Outbox } from '../transport/outbox';
import { lostText } from '../transport/outbox-file';
import type { UpdateAgent } from '../fleet/agent';
import { watchConditions } from '../maintenance/watch';
import type { InputSpec } from '../model/manifest';
import { parseNodeConfig, type NodeConfig, type NodeConfigInput, type SourceConfig } from './config';
import { nodeCommands } from './commands';
import { EdgeNode, type NodeSource } from './edge-node';
import { commandAuthoriser, createUpdateAgent, openPackageStore, recoveryEvent } from './fleet';
import { StoreLock } from '../fleet/store-lock';
import { closeAll, type Closer } from './close';

export interface CreateNodeOptions {
  logger?: Logger;
  /** Sources built by the caller (an SDK push source, the demo's replay), beside the config's URIs. */
  extraSources?: NodeSource[];
  /** How long each source's stop may take before the node is stopped without it (default 10 s; see EdgeNode). */
  sourceStopMs?: number;
}

export interface CreatedNode {
  node: EdgeNode;
  profile: DeviceProfile;
  transport?: MqttTransport;
  /** Set when the config asked for the in-process broker; its URL is what clients connect to. */
  broker?: EmbeddedBroker;
  /** Set when the config has a `fleet` section: remote updates arrive as the MQTT `update` command. */
  agent?: UpdateAgent;
}

/** The profile named in the config, or for "auto" the one that fits this host (CPU-only when none does). */
export async function resolveProfile(name: string, logger: Logger): Promise<DeviceProfile> {
  if (name !== 'auto') return loadDeviceProfile(name);
  const host = detectHost();
  const fitting = pickProfile(await listDeviceProfiles(), host);
  if (fitting) return fitting;
  logger.warn({ host }, 'no device profile fits this host; using x86_64-cpu settings');
  return loadDeviceProfile('x86_64-cpu');
}

function preprocessOf(source: SourceConfig) {
  const { roi, fit, pad, maxPixels } = source;
  return { roi, fit, pad, maxPixels };
}

/**
 * Wires a node from a validated config: engine on the device profile, sources, audit log, MQTT transport with
 * its outbox (and the embedded broker when asked). Everything opened here is closed by `node.stop()`, each part even
 * when another fails to close (logged; the stop rejects with the first failure).
 */
export async function createEdgeNode(input: NodeConfigInput, options: CreateNodeOptions = {}): Promise<CreatedNode> {
  // Validated here too (parsing is idempotent): an SDK user's plain object gets E_CONFIG_INVALID, not a TypeError.
  const config = parseNodeConfig(input);
  const logger = options.logger ?? silentLogger;
  const profile = await resolveProfile(config.device, logger);
  const engineOptions = { profile, logger, threads: config.threads === undefined ? undefined : { intraOp: config.threads } };
  // With fleet updates on, the package to run is the store's current one (the config's is only the first).
  const fleet = config.fleet ? await openPackageStore(config.fleet, config.model, logger) : undefined;
  // The parts the node opens, closed on stop in this order; its locks go after all of them, when nothing of this node
  // writes or listens any more. The store is this node's until it stops (the offline rollback refuses meanwhile).
  const closers: Closer[] = [];
  const locks: Closer[] = fleet ? [() => fleet.store.lock.release()] : [];
  const engine = await Engine.load(fleet?.modelDir ?? config.model, engineOptions).catch(async (err: unknown) => {
    await closeAll(locks, logger).catch(() => undefined);
    throw err;
  });
  let audit: AuditLog | undefined;
  try {
    // First: a second node on this config is refused before it takes the first's broker port or folders.
    const lock = config.audit && (await lockAuditLog(config.audit.file, logger));
    if (lock) locks.push(() => lock.release());
    applyRouting(config, engine);

    let broker: EmbeddedBroker | undefined;
    let transportConfig: TransportConfig | undefined;
    if (config.mqtt) {
      transportConfig = parseTransportConfig(config.mqtt);
      if (transportConfig.embeddedBroker) {
        const embedded = new EmbeddedBroker({ port: transportConfig.embeddedBroker.port, logger });
        transportConfig = { ...transportConfig, url: await embedded.start() };
        closers.push(() => embedded.stop());
        broker = embedded;
      }
    }

    // Sources report drops, and the audit log alarms, to the node, which exists only after them: bind late. So does
    // a hot folder's question whether the audit log, opened after it, holds a file's decision already.
    let node: EdgeNode | undefined;
    const onDrop = (frame: Frame) => node?.recordDrop(frame);
    const onError = (source: string, error: SgmoeError) => node?.sourceError(source, error);
    const batch = { maxSize: config.batch.maxSize ?? profile.batch.maxSize, maxWaitMs: config.batch.maxWaitMs ?? profile.batch.maxWaitMs };
    const window = config.window ?? batch.maxSize;
    // A row says its result was queued in the outbox: not in one moved aside at this start, nor in memory.
    let outboxKeptResults = true;
    const settledBefore: SettledBefore = (frame) => {
      if (!audit || !outboxKeptResults) return undefined;
      let row;
      try {
        row = audit.latestOutcome(frame.source, frame.id, inputSha256(frame) ?? null);
      } catch (err) {
        // Decided again rather than not at all: a duplicate, never a loss.
        logger.warn({ source: frame.source, err: errorMessage(err) }, 'could not ask the audit log whether a file was decided before the stop');
        return undefined;
      }
      return row && (row.status === 'ok' ? { status: 'decided' } : { status: 'rejected', error: new SgmoeError(row.code as ErrorCode, row.message) });
    };
    // Camera decoders crop and scale to the package's input; after a swap to another size, preprocessing resizes.
    const { input } = engine.manifest;
    const camera = { input: input.kind === 'image' ? input : undefined, decoder: profile.decoder ?? DEFAULT_DECODER };
    const sources: NodeSource[] = config.sources.map((s) => ({
      // The package's input kind decides what a frame is: an image as it comes, or windows cut from sample blocks.
      source: framesFor(openSourceFor(s, config, transportConfig, { onDrop, onError, settledBefore }, logger, camera), engine.manifest.input, { gain: s.gain, settledBefore }),
      preprocess: preprocessOf(s),
    }));
    // An SDK user's own sources: windowed for a signal package and accounted for (drops, errors) as config ones.
    for (const extra of options.extraSources ?? []) {
      extra.source.reportTo?.({ onDrop, onError: (error) => onError(extra.source.name, error) });
      sources.push({ ...extra, source: framesFor(extra.source, input) });
    }

    let auditUnavailable: SgmoeError | undefined;
    if (config.audit) {
      const r = config.audit.retention;
      const { windowSize, ...thresholds } = config.audit.health ?? {};
      try {
        audit = AuditLog.open(config.audit.file, {
          model: {
            ...engine.model,
            experts: engine.manifest.parts.experts.length,
            expertShare: engine.manifest.calibration.expertShare,
            scoreQuantiles: engine.manifest.calibration.anomaly?.quantiles,
          },
          health: { windowSize, thresholds },
          retention: r ? { maxAgeMs: r.maxAgeDays === undefined ? undefined : r.maxAgeDays * 86_400_000, maxRows: r.maxRows, maxBytes: r.maxBytes } : undefined,
          onAlarm: (alarm) => node?.publishAlarm(alarm),
          logger,
        });
      } catch (err) {
        // An unwritable or locked audit file must not stop the line: the node decides and counts what it could not audit.
        auditUnavailable = err instanceof SgmoeError ? err : new SgmoeError('E_AUDIT_UNWRITABLE', errorMessage(err), undefined, { cause: err });
        logger.error({ code: auditUnavailable.code, err: auditUnavailable.message }, 'audit log unavailable: deciding without it');
      }
      const recovered = fleet && recoveryEvent(fleet.recovery);
      if (recovered) audit?.event(recovered);
      audit?.event({ kind: 'model_loaded', message: `${engine.model.name} ${engine.model.version} loaded`, details: { providers: engine.providerSummary() } });
    }

    node = new EdgeNode({
      engine,
      sources,
      audit,
      auditUnavailable,
      batch,
      window,
      applyRouting: (next) => applyRouting(config, next),
      healthIntervalMs: config.healthIntervalMs,
      logger,
      onClosed: () => closeAll([...closers, ...locks], logger),
      sourceStopMs: options.sourceStopMs,
    });
    const agent = fleet && config.fleet ? await createUpdateAgent({ store: fleet.store, node, fleet: config.fleet, engine: engineOptions, healthIntervalMs: config.healthIntervalMs, transportConfig, audit, logger }) : undefined;

    let transport: MqttTransport | undefined;
    if (transportConfig) {
      const { outbox, path: outboxPath, unavailable } = openOutbox(transportConfig, config, logger);
      closers.unshift(() => outbox.close());
      outboxKeptResults = !outbox.recovered && !unavailable;
      if (outbox.recovered) {
        const r = outbox.recovered;
        audit?.event({ kind: 'db_recovered', message: `outbox ${outboxPath} unreadable (${r.code}), moved to ${r.movedTo}: ${lostText(r.resultsMayBeLost)}`, details: { ...r } });
      }
      transport = new MqttTransport({
        config: transportConfig,
        outbox,
        logger,
        authoriser: await commandAuthoriser(transportConfig, config.fleet?.trustedKeys, outboxPath, logger),
        onRefused: ({ command, id, error }) =>
          audit?.event({ kind: 'command_refused', message: `${command} refused: ${error.message}`, details: { command, id, code: error.code } }),
        commands: {
          ...nodeCommands(node, () => redact(config)),
          ...(agent ? { update: (request, id, origin) => agent.update(request, id, origin.keyId), rollback: (id, origin) => agent.rollback(id, origin.keyId) } : {}),
        },
      });
      node.attachTransport(transport, unavailable);
    }
    if (audit && config.audit && config.audit.frames.keep !== 'none') keepFramesForReview(node, new FrameStore({ dir: framesDirOf(config.audit.file), ...config.audit.frames, logger }), closers);
    node.attachConditionAlarms(watchConditions(node, { ...config.conditionAlarms, transport, audit, logger }));
    return { node, profile, transport, broker, agent };
  } catch (err) {
    // Each part even when one before it fails to close (each failure is logged); the error that stopped the start is
    // the one to report.
    await closeAll([() => audit?.close(), () => engine.dispose(), ...closers, ...locks], logger).catch(() => undefined);
    throw err;
  }
}

/**
 * The audit log's lock: a second node on the same audit log (the same config started twice) is refused with
 * E_STORE_IN_USE, since both would take the same hot folders' frames and audit them twice. A lock that cannot be
 * written (a read-only or full disk) does not stop the line: the audit log's own open then says what is wrong.
 */
async function lockAuditLog(file: string, logger: Logger): Promise<StoreLock | undefined> {
  const lock = new StoreLock(`${file}.lock`, 'audit log');
  try {
    mkdirSync(dirname(file), { recursive: true });
    await lock.acquire();
    return lock;
  } catch (err) {
    if (err instanceof SgmoeError && err.code === 'E_STORE_IN_USE') throw err;
    logger.warn({ file: lock.path, err: errorMessage(err) }, 'could not lock the audit log: a second node on it would not be refused');
    return undefined;
  }
}

/**
 * Each decided frame's bytes go to the review store (anomalous ones, or all), an anomalous one's with its score map
 * (for a restarted dashboard's heatmap); a raw frame's as the PNG made of its pixels. The node's stop waits for the writes.
 */
function keepFramesForReview(node: EdgeNode, store: FrameStore, closers: Closer[]): void {
  // A full disk stops the line (the audit log and the outbox hold their frames): kept frames give way first.
  node.on('fault', (fault) => {
    if (fault.code === 'E_STORAGE_UNWRITABLE' && fault.state === 'raised') void store.reclaim();
  });
  node.on('decision', (frame, decision) => {
    const anomaly = (decision.extra as Partial<AnomalyFields> | undefined)?.anomaly;
    const anomalous = anomaly?.verdict === 'anomalous';
    const map = anomalous ? { grid: anomaly.grid, map: anomaly.map } : undefined;
    if (frame.raw) store.offerPng(() => pngOf(frame), anomalous, map);
    else store.offer(frame.bytes, anomalous, map);
  });
  closers.unshift(() => store.flush());
}

/**
 * The outbox at `mqtt.outbox.path` (default: beside the audit log). One that cannot open (a read-only folder, a
 * locked file) must not stop the line, as for the audit log: results then wait in memory, and the snapshot and
 * summary say why and that a restart loses what waits.
 */
function openOutbox(transport: TransportConfig, config: NodeConfig, logger: Logger): { outbox: Outbox; path: string; unavailable?: SgmoeError } {
  const path = transport.outbox.path ?? join(dirname(config.audit?.file ?? join('data', 'audit.db')), 'outbox.db');
  const options = { maxResults: transport.outbox.maxResults, synchronous: transport.outbox.synchronous, logger };
  try {
    mkdirSync(dirname(path), { recursive: true });
    return { outbox: Outbox.open(path, options), path };
  } catch (err) {
    const unavailable = err instanceof SgmoeError ? err : new SgmoeError('E_OUTBOX_OPEN', `could not open the outbox database ${path}: ${errorMessage(err)}`, { path }, { cause: err });
    logger.error({ code: unavailable.code, err: unavailable.message }, 'outbox unavailable: results wait in memory until the broker takes them');
    return { outbox: Outbox.open(':memory:', options), path, unavailable };
  }
}

/**
 * The config's routing knobs, when it sets any (otherwise the package's calibrated operating point stands), checked
 * against the package with the condition alarms' normal condition.
 */
function applyRouting(config: NodeConfig, engine: Engine): void {
  const { routing } = config;
  if (routing.computeBudgetMacs !== undefined) engine.setComputeBudget(routing.computeBudgetMacs);
  engine.configure({
    ...(routing.threshold !== undefined ? { threshold: routing.threshold } : {}),
    ...(routing.topK !== undefined ? { topK: routing.topK } : {}),
    ...(routing.mode !== undefined ? { mode: routing.mode } : {}),
  });
  if (routing.falseAlarmRate !== undefined) setFalseAlarmRate(engine.task, routing.falseAlarmRate, 'routing.falseAlarmRate', 'E_CONFIG_INVALID');
  // A normal condition the package cannot decide would make every machine's first condition an alarm.
  const { labels } = engine.manifest;
  if (engine.task.name === 'condition' && !labels.includes(config.conditionAlarms.normal)) {
    throw new SgmoeError(
      'E_CONFIG_INVALID',
      `conditionAlarms.normal: expected one of ${engine.model.name}'s conditions (${labels.join(', ')}), found ${JSON.stringify(config.conditionAlarms.normal)}`,
    );
  }
}

function openSourceFor(
  s: SourceConfig,
  config: NodeConfig,
  transport: TransportConfig | undefined,
  report: { onDrop: (frame: Frame) => void; onError: (source: string, error: SgmoeError) => void; settledBefore: SettledBefore },
  logger: Logger,
  camera: { input: InputSpec | undefined; decoder: DecoderSettings },
): FrameSource {
  if (s.uri.startsWith('mqtt:') && !transport) {
    throw new SgmoeError('E_CONFIG_INVALID', `source ${s.uri} needs an mqtt section in the config (the broker to subscribe to)`);
  }
  const name = s.name ?? redactText(s.uri);
  return openSource(s.uri, {
    name,
    policy: s.policy,
    capacity: s.capacity,
    intervalMs: s.intervalMs,
    timeoutMs: s.timeoutMs,
    pollMs: s.pollMs,
    stableMs: s.stableMs,
    rejectAfterMs: s.rejectAfterMs,
    transport: s.transport,
    capture: s.capture,
    rate: s.rate,
    preprocess: preprocessOf(s),
    ...camera,
    once: config.once,
    mqtt: transport?.url,
    connectOptions: transport && connectOptionsFor(transport, `${clientIdOf(transport)}-${s.name ?? s.uri}`),
    onDrop: report.onDrop,
    settledBefore: report.settledBefore,
    onError: (error: SgmoeError) => report.onError(name, error),
    logger,
  });
}

