import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Decision } from '../engine/decision';
import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { clientIdOf, connectOptionsFor, type TransportConfig } from './config';
import { redact, redactText } from '../redact';
import type { CommandAuthoriser } from './authorise';
import { CommandDispatcher, type CommandHandlers, type RefusedCommand } from './commands';
import type { Outbox, OutboxEntry, OutboxMessage, OutboxStats } from './outbox';
import { lostText, type OutboxRecovery } from './outbox-file';
import {
  ALARM_SCHEMA,
  REPLY_SCHEMA,
  HEALTH_SCHEMA,
  STATUS_SCHEMA,
  resultPayload,
  anomalyPayload,
  rejectedPayload,
  type AlarmPayload,
  type FrameMeta,
  type HealthPayload,
  type ReplyPayload,
  type StatusPayload,
} from '../protocol/payloads';
import { topicsFor, type Topics } from '../protocol/topics';
import { ENVELOPE_FIELDS } from '../protocol/command';
import { bounded } from './bounded';

/** A frame the node could not decide, for `rejected`. */
export interface Rejection {
  frameId: string;
  error: { code: string; message: string };
  model: { name: string; version: string };
  frame: FrameMeta;
}

export interface MqttTransportOptions {
  config: TransportConfig;
  /** Where every result, health report and alarm waits for its PUBACK; owned (and closed) by the caller. */
  outbox: Outbox;
  /** Absent: the transport does not subscribe to commands. */
  commands?: CommandHandlers;
  /** Checks the signed envelope of every state-changing command; absent = they are all refused. */
  authoriser?: CommandAuthoriser;
  /** Told of each command refused for want of authorisation (the node audits it). */
  onRefused?: (refused: RefusedCommand) => void;
  logger?: Logger;
}

/** An outbox row on its way: `next` is the index of its first message not yet published. */
interface QueuedRow {
  entry: OutboxEntry;
  next: number;
  onSent: (err?: Error) => void;
}

/** idle → connecting ⇄ online → stopped. */
export type TransportState = 'idle' | 'connecting' | 'online' | 'stopping' | 'stopped';

export interface TransportStats {
  state: TransportState;
  inFlight: number;
  connects: number;
  outbox: OutboxStats;
  /** The outbox file was corrupt at start and replaced by a fresh one: how many queued results may be lost. */
  outboxRecovered: OutboxRecovery | null;
  lastError: { code: string; message: string } | null;
}

/**
 * What the node hears of the broker beyond the stats: a refusal that retrying cannot fix (E_MQTT_AUTH, E_MQTT_TLS)
 * once running, and every accepted connection (which ends such a refusal).
 */
export interface TransportEvents {
  refused: [error: SgmoeError];
  online: [];
}

/**
 * Connect failures that retrying cannot fix: `start()` rejects with them instead of queueing forever; once running,
 * the transport keeps retrying (the broker's users may be fixed without a restart) and emits `refused`.
 */
const FATAL_AT_START = new Set(['E_MQTT_AUTH', 'E_MQTT_TLS']);
const NETWORK_ERRORS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
]);
/** CONNACK codes for bad credentials / not authorised, MQTT 3.1.1 (4, 5) and 5 (0x86, 0x87). */
const AUTH_REFUSALS = new Set([4, 5, 0x86, 0x87]);
const SHUTDOWN_TIMEOUT_MS = 5000;
/**
 * PUBACKs are recorded in the outbox at most this long after they arrive, in one transaction: the bookkeeping stays
 * off the way from the next decision to the broker, and under load it is one commit per interval rather than per
 * turn. A crash before the commit sends those results again: a duplicate, never a loss.
 */
const ACK_FLUSH_MS = 10;
/** Acknowledgements the outbox could not record (a full disk) are tried again this often, and on every stats read. */
const ACK_RETRY_MS = 1000;

/**
 * The MQTT side of the node (mqtt.js v5). Every result goes into the outbox first; a publisher drains
 * the outbox in order with at most `inFlight` messages awaiting their PUBACK, and deletes each when the
 * broker acknowledged it. One mqtt.js client per connection, reconnecting with our own backoff: after a
 * reconnect (or a restart) everything still in the outbox is sent again from the oldest, so nothing
 * depends on mqtt.js's in-memory store and QoS 1 may duplicate but never loses.
 */
export class MqttTransport extends EventEmitter<TransportEvents> {
  readonly topics: Topics;
  private readonly config: TransportConfig;
  private readonly outbox: Outbox;
  private readonly log: Logger;
  private readonly commands: CommandDispatcher | null;
  private readonly clientId: string;
  /** The broker URL as logs, errors and the status may show it: no credentials. */
  private readonly safeUrl: string;
  private connectOptions: IClientOptions = {};
  private state: TransportState = 'idle';
  private client: MqttClient | null = null;
  /** Bumped per connection, so callbacks of a dead connection are recognised and ignored. */
  private generation = 0;
  private connects = 0;
  private backoffMs: number;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private attemptError: SgmoeError | null = null;
  private lastError: SgmoeError | null = null;
  private firstOutcome: { resolve: () => void; reject: (err: SgmoeError) => void } | null = null;
  /** Highest sequence number handed to the current connection. */
  private cursor = 0;
  private inFlight = 0;
  private pumping = false;
  /** Rows read from the outbox (or just stored) whose messages are not all published yet; the first may be partly. */
  private queue: QueuedRow[] = [];
  /** Every row in the outbox is queued or in flight on this connection: new rows can join the queue from memory. */
  private caughtUp = false;
  /**
   * Rows the broker has every PUBACK of, not yet deleted from the outbox. Kept until the outbox records them (a full
   * disk refuses it), and skipped when a new connection sends the outbox again: the broker has them already.
   */
  private readonly acked = new Set<number>();
  private ackFlush: NodeJS.Timeout | null = null;
  /** The outbox refused the last acknowledgements: logged once, and once more when they are recorded. */
  private ackFailing = false;
  private statusInfo: Record<string, unknown> = {};
  private readonly startedAt = Date.now();

  constructor(options: MqttTransportOptions) {
    super();
    this.config = options.config;
    this.outbox = options.outbox;
    this.log = (options.logger ?? silentLogger).child({ module: 'transport' });
    this.topics = topicsFor(this.config);
    this.clientId = clientIdOf(this.config);
    this.safeUrl = redactText(this.config.url);
    this.backoffMs = this.config.reconnect.minMs;
    this.commands = options.commands
      ? new CommandDispatcher({
          handlers: options.commands,
          maxPayloadBytes: this.config.commands.maxPayloadBytes,
          authoriser: options.authoriser,
          onRefused: options.onRefused,
          logger: options.logger,
        })
      : null;
    const recovered = this.outbox.recovered;
    if (recovered) {
      this.publishAlarm({
        severity: 'warning',
        code: 'E_OUTBOX_RECOVERED',
        message: `the outbox database was unreadable (${recovered.code}) and was moved to ${recovered.movedTo}; ${lostText(recovered.resultsMayBeLost)}`,
        details: { ...recovered },
      });
    }
  }

  /**
   * Connects and resolves on the first CONNACK, or when the broker is unreachable (the node starts
   * anyway; results queue in the outbox and the transport keeps retrying). Rejects with E_MQTT_AUTH or
   * E_MQTT_TLS when the broker refuses the credentials or the TLS handshake fails.
   */
  start(): Promise<void> {
    if (this.state !== 'idle') {
      return Promise.reject(new SgmoeError('E_TRANSPORT_STATE', `start() expects a transport that never started, found one ${this.state}`));
    }
    this.connectOptions = connectOptionsFor(this.config, this.clientId);
    this.state = 'connecting';
    return new Promise((resolve, reject) => {
      this.firstOutcome = { resolve, reject };
      this.connect();
    });
  }

  /** Publishes the retained offline status (acknowledged), then disconnects cleanly so the will is not sent. */
  async stop(): Promise<void> {
    if (this.state === 'idle' || this.state === 'stopped' || this.state === 'stopping') {
      this.state = 'stopped';
      return;
    }
    const wasOnline = this.state === 'online';
    this.state = 'stopping';
    this.clearReconnect();
    this.settleFirstOutcome(null);
    const client = this.client;
    if (client && wasOnline) {
      try {
        await bounded(client, client.publishAsync(this.topics.status, this.statusPayload('offline', 'shutdown'), { qos: 1, retain: true }), SHUTDOWN_TIMEOUT_MS, 'publishing the shutdown status');
        await bounded(client, client.endAsync(), SHUTDOWN_TIMEOUT_MS, 'disconnecting');
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'clean disconnect failed; the broker will publish the last will instead');
        client.end(true);
      }
    } else {
      client?.end(true);
    }
    this.client = null;
    this.state = 'stopped';
    this.log.info({ outbox: this.outboxStats() }, 'transport stopped');
    // The caller closes the outbox next: acknowledgements it could not record go out again at the next start.
    if (this.ackFlush) clearTimeout(this.ackFlush);
    this.ackFlush = null;
  }

  /** Queues one decision (durably) and sends it when the broker is there. */
  publishResult(decision: Decision, frame: FrameMeta): void {
    this.publishResults([{ decision, frame }]);
  }

  /**
   * Queues the outcomes of one batch in one outbox transaction: one disk sync for all of them. A decision goes on
   * `result`, and an anomalous frame (task anomaly) also on `anomaly`, QoS 1, never dropped; a frame the node could
   * not decide goes on `rejected`, QoS 1.
   */
  publishResults(results: ReadonlyArray<{ decision: Decision; frame: FrameMeta }>, rejections: readonly Rejection[] = []): void {
    const messages: OutboxMessage[] = [];
    for (const { decision, frame } of results) {
      messages.push({ kind: 'result', topic: this.topics.result, payload: JSON.stringify(resultPayload(decision, frame)), qos: this.config.resultQos });
      const anomaly = anomalyPayload(decision, frame);
      if (anomaly) messages.push({ kind: 'anomaly', topic: this.topics.anomaly, payload: JSON.stringify(anomaly), qos: 1 });
    }
    for (const { frameId, error, model, frame } of rejections) {
      messages.push({ kind: 'rejected', topic: this.topics.rejected, payload: JSON.stringify(rejectedPayload(frameId, error, model, frame)), qos: 1 });
    }
    // A frame is settled only after this returns, so a power cut before the fsync costs a duplicate (the frame is
    // taken again), never a loss.
    this.store(messages);
  }

  publishHealth(report: Pick<HealthPayload, 'counters' | 'sources' | 'routing'>): number {
    const payload: HealthPayload = {
      schema: HEALTH_SCHEMA,
      ts: new Date().toISOString(),
      uptimeS: (Date.now() - this.startedAt) / 1000,
      outbox: this.outboxStats(),
      counters: report.counters,
      ...(report.sources ? { sources: report.sources } : {}),
      ...(report.routing ? { routing: report.routing } : {}),
    };
    return this.enqueue('health', this.topics.health, payload, 1);
  }

  /** Alarms are never dropped from the outbox, however long the broker is away. */
  publishAlarm(alarm: Pick<AlarmPayload, 'severity' | 'code' | 'message' | 'details'>): number {
    const payload: AlarmPayload = { schema: ALARM_SCHEMA, ts: new Date().toISOString(), ...alarm };
    return this.enqueue('alarm', this.topics.alarm, payload, 1);
  }

  /** What the retained status tells the plant (model, versions...); republished now when online. */
  setStatusInfo(info: Record<string, unknown>): void {
    this.statusInfo = { ...info };
    if (this.state === 'online' && this.client) this.publishBirth(this.client);
  }

  stats(): TransportStats {
    return {
      state: this.state,
      inFlight: this.inFlight,
      connects: this.connects,
      outbox: this.outboxStats(),
      outboxRecovered: this.outbox.recovered,
      lastError: this.lastError ? { code: this.lastError.code, message: this.lastError.message } : null,
    };
  }

  private enqueue(kind: 'result' | 'health' | 'alarm', topic: string, payload: object, qos: 0 | 1): number {
    return this.store([{ kind, topic, payload: JSON.stringify(payload), qos }])[0].seq;
  }

  /** Every message's way out: stored in one outbox transaction, and sent as soon as it is committed, while the outbox waits for the disk. */
  private store(messages: readonly OutboxMessage[]): OutboxEntry[] {
    return this.outbox.enqueueAll(messages, (entries) => this.sendFresh(entries));
  }

  private connect(): void {
    const generation = ++this.generation;
    this.attemptError = null;
    const client = mqtt.connect(this.config.url, {
      ...this.connectOptions,
      will: { topic: this.topics.status, payload: Buffer.from(this.statusPayload('offline', 'lost')), qos: 1, retain: true },
    });
    this.client = client;
    client.on('connect', () => generation === this.generation && this.onConnect(client));
    client.on('error', (err) => generation === this.generation && this.onError(err));
    client.on('close', () => generation === this.generation && this.onClose(client));
    client.on('message', (topic, payload) => void this.onMessage(topic, payload));
  }

  private onConnect(client: MqttClient): void {
    if (this.state !== 'connecting') return;
    this.state = 'online';
    this.connects++;
    this.backoffMs = this.config.reconnect.minMs;
    this.lastError = null;
    // Results are small and each should leave now: Nagle's algorithm would hold one back until the broker acknowledged
    // the previous segment, which it may delay (delayed ACK) while it waits for more: stalls of tens of milliseconds.
    (client.stream as { setNoDelay?: (noDelay: boolean) => void }).setNoDelay?.(true);
    this.log.info({ url: this.safeUrl, clientId: this.clientId, pending: this.outboxStats().pending }, 'connected to the broker');
    this.publishBirth(client);
    if (this.commands) {
      client.subscribe(this.topics.commands, { qos: 1 }, (err) => {
        if (err) this.log.error({ err: errorMessage(err), topic: this.topics.commands }, 'could not subscribe to commands');
      });
    }
    this.settleFirstOutcome(null);
    this.resetDelivery();
    this.pump();
    // Last: a listener may store messages (a cleared fault's alarm), which join this connection's delivery.
    this.emit('online');
  }

  private onError(err: Error): void {
    const error = describeConnectionError(err, this.safeUrl, this.clientId);
    this.attemptError = error;
    this.lastError = error;
    const fatal = FATAL_AT_START.has(error.code);
    this.log[fatal ? 'error' : 'warn']({ code: error.code, err: error.message }, 'mqtt connection error');
    // At start, start() rejects with it instead.
    if (fatal && !this.firstOutcome) this.emit('refused', error);
  }

  private onClose(client: MqttClient): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    client.end(true); // release this client's timers; the next attempt gets a new one
    if (this.state === 'online') this.log.warn({ pending: this.outboxStats().pending }, 'lost the broker; results queue in the outbox');
    this.state = 'connecting';
    this.flushAcks();
    this.resetDelivery();
    const failure = this.attemptError ?? new SgmoeError('E_MQTT_UNREACHABLE', `broker ${this.safeUrl} closed the connection before it was accepted (expected a CONNACK)`);
    if (this.firstOutcome && FATAL_AT_START.has(failure.code)) {
      this.state = 'stopped';
      this.settleFirstOutcome(failure);
      return;
    }
    if (this.firstOutcome) this.log.warn({ url: this.safeUrl, code: failure.code }, 'broker unreachable at start: starting anyway, results queue in the outbox');
    this.settleFirstOutcome(null);
    this.scheduleReconnect();
  }

  private async onMessage(topic: string, payload: Buffer): Promise<void> {
    const name = this.topics.commandName(topic);
    if (!this.commands || name === null) return;
    this.sendReply(name, await this.commands.handle(name, payload));
  }

  /** Progress of a long command (an update's steps), on the reply topic that will also carry its one final answer. */
  publishProgress(command: string, id: string, data: unknown): void {
    this.sendReply(command, { schema: REPLY_SCHEMA, id, command, ts: new Date().toISOString(), ok: true, progress: true, data });
  }

  /** On the connection of the moment: a long command may outlive the one it arrived on. */
  private sendReply(command: string, reply: ReplyPayload): void {
    const client = this.client;
    if (this.state !== 'online' || !client) {
      this.log.warn({ command, id: reply.id }, 'broker unreachable: command reply not sent');
      return;
    }
    client.publish(this.topics.reply(command), JSON.stringify(redact(reply)), { qos: 1 }, (err) => {
      if (err) this.log.warn({ command, err: errorMessage(err) }, 'could not send a command reply');
    });
  }

  /**
   * Publishes queued messages while the in-flight window (counted in messages) has room, reading the next rows after
   * the cursor when the queue runs dry. It runs again on every PUBACK, so a message leaves the moment one is
   * acknowledged, one at a time. Waiting for several PUBACKs before sending stalls against a broker that leaves
   * Nagle's algorithm on (mosquitto's default): it holds its next PUBACKs until the client acknowledges the last
   * segment, which the client's TCP delays (tens of milliseconds) while it has nothing to send; a publish carries that
   * acknowledgement at once (`sgmoe bench transport`, window 100: 0.14x raw publishing when refilled after 16 PUBACKs).
   */
  private pump(): void {
    const client = this.client;
    if (this.pumping || this.state !== 'online' || !client) return;
    this.pumping = true;
    try {
      while (this.inFlight < this.config.inFlight && this.state === 'online' && client.connected) {
        const row = this.queue[0] ?? this.readAhead();
        if (!row) break;
        this.publishNext(client, row);
        if (row.next === row.entry.payloads.length) this.queue.shift();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The rows after the cursor, a window's worth of messages at a time, into the queue; null when none are left. */
  private readAhead(): QueuedRow | null {
    while (!this.caughtUp && this.queue.length === 0) {
      const entries = this.outbox.next(this.cursor, this.config.inFlight);
      this.caughtUp = entries.reduce((n, e) => n + e.payloads.length, 0) < this.config.inFlight;
      for (const entry of entries) {
        if (this.acked.has(entry.seq)) this.cursor = entry.seq;
        else this.enqueueRow(entry);
      }
    }
    return this.queue[0] ?? null;
  }

  /**
   * Rows just stored: when the queue holds everything the outbox does and they fit in a window, they join it from
   * memory, without reading back what was just written; otherwise the pump reads them in turn.
   */
  private sendFresh(entries: readonly OutboxEntry[]): void {
    const queued = this.queue.reduce((n, row) => n + row.entry.payloads.length - row.next, 0);
    const messages = entries.reduce((n, e) => n + e.payloads.length, 0);
    if (this.caughtUp && queued + messages <= this.config.inFlight) for (const entry of entries) this.enqueueRow(entry);
    else this.caughtUp = false;
    this.pump();
  }

  /** A new connection sends everything the outbox still holds again, oldest first (but rows the broker acknowledged). */
  private resetDelivery(): void {
    this.cursor = 0;
    this.inFlight = 0;
    this.queue = [];
    this.caughtUp = false;
  }

  /** A row joins the queue with its own PUBACK count: it is acknowledged in the outbox once the broker has them all. */
  private enqueueRow(entry: OutboxEntry): void {
    const generation = this.generation;
    let waiting = entry.payloads.length;
    let failed = false;
    const onSent = (err?: Error): void => {
      if (generation !== this.generation) return; // that connection is gone; the row goes out again on the next
      this.inFlight--;
      if (err) {
        // Left in the outbox: sent again after the next reconnect. No pump: a failed publish means a closing
        // connection, and pumping into it would fail every row the outbox holds, one warning each.
        if (!failed) this.log.warn({ seq: entry.seq, kind: entry.kind, err: errorMessage(err) }, 'publish failed');
        failed = true;
        return;
      }
      if (--waiting === 0 && !failed) this.ack(entry.seq);
      this.pump();
    };
    this.cursor = entry.seq;
    this.queue.push({ entry, next: 0, onSent });
  }

  private publishNext(client: MqttClient, row: QueuedRow): void {
    this.inFlight++;
    // Health is retained, as status is: a one-shot `fleet status` reads frames/s, alarms and "last seen" from it.
    // Rows go out oldest first, so the broker keeps the newest report.
    client.publish(row.entry.topic, row.entry.payloads[row.next++], { qos: row.entry.qos, retain: row.entry.kind === 'health' }, row.onSent);
  }

  /** The outbox's counts, with every PUBACK received so far recorded. */
  private outboxStats(): OutboxStats {
    this.flushAcks();
    return this.outbox.stats();
  }

  private ack(seq: number): void {
    this.acked.add(seq);
    this.ackFlush ??= setTimeout(() => this.flushAcks(), ACK_FLUSH_MS).unref();
  }

  /**
   * Deletes the acknowledged rows from the outbox. When it refuses (a full disk), they are kept and tried again
   * until it takes them, without a restart and without sending them again; a restart meanwhile sends them again (a
   * duplicate, never a loss).
   */
  private flushAcks(): void {
    if (this.ackFlush) clearTimeout(this.ackFlush);
    this.ackFlush = null;
    if (this.acked.size === 0) return;
    const count = this.acked.size;
    try {
      this.outbox.ack([...this.acked]);
    } catch (err) {
      if (!this.ackFailing) this.log.error({ err: errorMessage(err), count }, 'could not record acknowledgements: trying again until the outbox takes them');
      this.ackFailing = true;
      this.ackFlush = setTimeout(() => this.flushAcks(), ACK_RETRY_MS).unref();
      return;
    }
    this.acked.clear();
    if (this.ackFailing) this.log.info({ count }, 'acknowledgements recorded again');
    this.ackFailing = false;
  }

  private publishBirth(client: MqttClient): void {
    client.publish(this.topics.status, this.statusPayload('online', 'connected'), { qos: 1, retain: true }, (err) => {
      if (err) this.log.warn({ err: errorMessage(err) }, 'could not publish the birth status');
    });
  }

  private statusPayload(state: StatusPayload['state'], reason: StatusPayload['reason']): string {
    const ts = new Date().toISOString();
    const payload: StatusPayload = {
      schema: STATUS_SCHEMA,
      state,
      reason,
      ts,
      site: this.config.site,
      device: this.config.device,
      clientId: this.clientId,
      // The broker publishes the will as it is now, whenever the node is lost: its time is that of the connect.
      ...(reason === 'lost' ? { willSetAt: ts } : {}),
      envelopeFields: [...ENVELOPE_FIELDS],
      info: redact(this.statusInfo),
    };
    return JSON.stringify(payload);
  }

  /** Exponential backoff with jitter, so a fleet that lost its broker does not reconnect in lockstep. */
  private scheduleReconnect(): void {
    const delay = Math.round(this.backoffMs / 2 + (Math.random() * this.backoffMs) / 2);
    this.backoffMs = Math.min(this.backoffMs * 2, this.config.reconnect.maxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === 'connecting') this.connect();
    }, delay);
  }

  private clearReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private settleFirstOutcome(err: SgmoeError | null): void {
    const outcome = this.firstOutcome;
    this.firstOutcome = null;
    if (!outcome) return;
    if (err) outcome.reject(err);
    else outcome.resolve();
  }
}

/**
 * Names the cause: refused credentials, a TLS failure, an unreachable broker, or anything else. Node's TLS layer gives
 * every failure a code (a certificate's, OpenSSL's); mqtt.js's own errors have none (a CONNACK that never came, TLS
 * handshake included, a keepalive timeout, a protocol error), so on an mqtts:// URL too they are no TLS failure: a
 * broker that stays silent is retried, never raised as a refusal that only a configuration change fixes.
 */
export function describeConnectionError(err: Error & { code?: unknown }, url: string, clientId: string): SgmoeError {
  const { code } = err;
  if (typeof code === 'number') {
    if (AUTH_REFUSALS.has(code)) {
      return new SgmoeError(
        'E_MQTT_AUTH',
        `broker ${url} refused client "${clientId}": ${err.message} (CONNACK code ${code}); expected credentials it accepts (username/password or client certificate)`,
        { returnCode: code },
        { cause: err },
      );
    }
    return new SgmoeError('E_MQTT_REFUSED', `broker ${url} refused client "${clientId}": ${err.message} (CONNACK code ${code})`, { returnCode: code }, { cause: err });
  }
  if (typeof code === 'string' && NETWORK_ERRORS.has(code)) {
    return new SgmoeError('E_MQTT_UNREACHABLE', `broker ${url} is unreachable: ${err.message}`, { errno: code }, { cause: err });
  }
  if (typeof code === 'string' && /^(mqtts|wss):/.test(url)) {
    return new SgmoeError(
      'E_MQTT_TLS',
      `TLS with ${url} failed: ${err.message} (${code}); check tls.ca, tls.servername and the client certificate`,
      { errno: code },
      { cause: err },
    );
  }
  return new SgmoeError('E_MQTT_CONNECTION', `connection to ${url} failed: ${err.message}`, { errno: code }, { cause: err });
}
