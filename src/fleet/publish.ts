import { randomUUID, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import type { z } from 'zod';
import { silentLogger, type Logger } from '../log';
import { alarmPayloadSchema, healthPayloadSchema, replyPayloadSchema, statusPayloadSchema, type ReplyPayload } from '../protocol/payloads';
import { DEFAULT_TOPIC_PREFIX, topicsFor, type Topics } from '../protocol/topics';
import { fleetInfoSchema, updateProgressSchema, type UpdateRequestInput, type UpdateStep } from '../protocol/update';
import { signCommand } from './command-signature';
import type { DeviceEntry } from './inventory';

/** Time a device gets after its announced health watch to report done (the last health sample, pruning). */
export const WATCH_GRACE_MS = 30_000;

export interface PublishOptions {
  /** A connected mqtt.js client. */
  client: MqttClient;
  site: string;
  /** Default `sgmoe/v1/{site}/{device}/`. */
  topicPrefix?: string;
  /** Every device to update; canaries listed here too are updated only once, first. */
  devices: string[];
  /** Updated first; the rest follow only if each canary finishes its update and stays healthy for the window. */
  canary?: string[];
  request: UpdateRequestInput;
  /** The operator key that signs each device's command envelope (devices refuse unsigned updates). */
  key: KeyObject;
  correlationId?: string;
  /**
   * How long a device has to reach its health watch (download, verify, self-test, swap). Its own watch is added
   * once it starts (the `watching` step says how long; WATCH_GRACE_MS on top), so a watch is never cut short.
   */
  replyTimeoutMs: number;
  /** How long canaries are watched after their update: they must stay online, raise no critical alarm and report health. */
  canaryWindowMs: number;
  /** Each device's step as it changes. */
  onProgress?: (progress: DeviceProgress) => void;
  /** What the operator already read of the devices (`checkTargets`): versions and health watch windows. */
  known?: Array<Pick<DeviceEntry, 'device' | 'version' | 'watchWindowMs'>>;
  /** Each device's outcome as soon as it is known. */
  onOutcome?: (outcome: DeviceOutcome) => void;
  /** Each phase of the rollout as it begins (the canaries' watch time is announced here). */
  onPhase?: (phase: RolloutPhase) => void;
  logger?: Logger;
}

export interface DeviceProgress {
  device: string;
  step: UpdateStep;
  /** Since the command was sent to this device. */
  elapsedMs: number;
  message: string;
  /** On `watching`: how long the device watches its health. */
  watchMs?: number;
}

export type RolloutPhase =
  | { phase: 'canary'; devices: string[]; watchMs: number | null; windowMs: number }
  | { phase: 'canary-window'; devices: string[]; windowMs: number }
  | { phase: 'rollout'; devices: string[] }
  | { phase: 'stopped'; devices: string[]; reason: string };

export type Outcome = 'done' | 'failed' | 'timeout' | 'unhealthy' | 'skipped';

/** How one device's update ended, for the final table. */
export interface DeviceOutcome {
  device: string;
  outcome: Outcome;
  /** The version the device runs at the end, as it last reported (null when it never said). */
  version: string | null;
  /** From the command to the outcome (0 for a device never sent the command). */
  durationMs: number;
  code: string | null;
  reason: string | null;
  /** The last step the device reported. */
  lastStep: UpdateStep | null;
}

export interface PublishReport {
  correlationId: string;
  /** Null without canaries. */
  canary: { ok: boolean; devices: DeviceOutcome[] } | null;
  /** The devices after the canaries; `skipped` when the canaries stopped the rollout. */
  devices: DeviceOutcome[];
  ok: boolean;
}

/** What the operator hears from one device while its update runs. */
class DeviceWatch {
  readonly topics: Topics;
  offline = false;
  criticalAlarms: string[] = [];
  healthMessages = 0;
  /** From its retained status: the version it runs and its health watch window. */
  version: string | null = null;
  watchWindowMs: number | null = null;
  private versionBefore: string | null = null;
  step: UpdateStep | null = null;
  stepSince = 0;
  sentAt = 0;
  private deadline = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private settle: ((o: DeviceOutcome) => void) | null = null;
  private final: DeviceOutcome | null = null;

  constructor(
    readonly device: string,
    options: Pick<PublishOptions, 'site' | 'topicPrefix'>,
    private readonly correlationId: string,
    private readonly targetVersion: string,
    private readonly onProgress: (p: DeviceProgress) => void,
    private readonly onOutcome: (o: DeviceOutcome) => void,
  ) {
    this.topics = topicsFor({ topicPrefix: options.topicPrefix ?? DEFAULT_TOPIC_PREFIX, site: options.site, device });
  }

  get subscriptions(): string[] {
    return [this.topics.reply('update'), this.topics.status, this.topics.health, this.topics.alarm];
  }

  /** Each message is checked against its schema; one that does not fit is reported and changes nothing. */
  onMessage(topic: string, json: unknown): string | null {
    if (topic === this.topics.status) {
      const status = check(statusPayloadSchema, json);
      if (typeof status === 'string') return status;
      this.offline = status.state === 'offline';
      const model = status.info.model as { version?: unknown } | undefined;
      if (typeof model?.version === 'string') this.version = model.version;
      const fleet = fleetInfoSchema.safeParse(status.info.fleet);
      if (fleet.success) this.watchWindowMs = fleet.data.watchWindowMs;
    } else if (topic === this.topics.health) {
      const health = check(healthPayloadSchema, json);
      if (typeof health === 'string') return health;
      this.healthMessages += 1;
    } else if (topic === this.topics.alarm) {
      const alarm = check(alarmPayloadSchema, json);
      if (typeof alarm === 'string') return alarm;
      if (alarm.severity === 'critical') this.criticalAlarms.push(`${alarm.code}: ${alarm.message}`);
    } else if (topic === this.topics.reply('update')) {
      const reply = check(replyPayloadSchema, json);
      if (typeof reply === 'string') return reply;
      if (reply.id === this.correlationId) return this.onReply(reply);
    }
    return null;
  }

  /** Progress messages carry the agent's steps; the one final reply ends the update (ok, or an error). */
  private onReply(reply: ReplyPayload): string | null {
    if (!reply.ok) {
      // A failed update changed nothing and a rolled-back one is back where it was: the version from before.
      this.version = this.versionBefore ?? this.version;
      this.finish('failed', reply.error.code, reply.error.message);
      return null;
    }
    if (!reply.progress) {
      this.version = this.targetVersion;
      this.finish('done', null, null);
      return null;
    }
    const progress = check(updateProgressSchema, reply.data);
    if (typeof progress === 'string') return progress;
    if (progress.step !== this.step) {
      this.step = progress.step;
      this.stepSince = Date.now();
      this.onProgress({ device: this.device, step: progress.step, elapsedMs: this.elapsedMs(), message: progress.message, ...(progress.watchMs !== undefined ? { watchMs: progress.watchMs } : {}) });
    }
    if (progress.model) this.version = progress.model.version;
    // The device's own health watch comes on top of the time it had to get there.
    if (progress.step === 'watching') this.extendTo(Date.now() + (progress.watchMs ?? this.watchWindowMs ?? 0) + WATCH_GRACE_MS);
    return null;
  }

  elapsedMs(): number {
    return this.sentAt === 0 ? 0 : Date.now() - this.sentAt;
  }

  private finish(outcome: Outcome, code: string | null, reason: string | null): void {
    if (this.final) return;
    if (this.timer) clearTimeout(this.timer);
    this.final = { device: this.device, outcome, version: this.version, durationMs: this.elapsedMs(), code, reason, lastStep: this.step };
    this.onOutcome(this.final);
    this.settle?.(this.final);
  }

  /** Starts the clock when the command goes out. */
  sent(timeoutMs: number): void {
    this.sentAt = Date.now();
    this.versionBefore = this.version;
    this.extendTo(this.sentAt + timeoutMs);
  }

  private extendTo(deadline: number): void {
    if (this.final || deadline <= this.deadline) return;
    this.deadline = deadline;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.timeout(), Math.max(0, deadline - Date.now()));
  }

  private timeout(): void {
    const seen = this.step
      ? `last step seen: ${this.step}, ${((Date.now() - this.stepSince) / 1000).toFixed(1)} s ago`
      : 'the device never acknowledged the request (no step seen: is it online, and does it trust the operator key?)';
    this.finish('timeout', 'E_CMD_TIMEOUT', `no final reply after ${(this.elapsedMs() / 1000).toFixed(1)} s; ${seen}`);
  }

  outcome(): Promise<DeviceOutcome> {
    if (this.final) return Promise.resolve(this.final);
    return new Promise((resolve) => (this.settle = resolve));
  }

  /** The device is left out: the rollout stopped before it. */
  skip(reason: string): DeviceOutcome {
    return { device: this.device, outcome: 'skipped', version: this.version, durationMs: 0, code: null, reason, lastStep: null };
  }

  /** Why this canary is not healthy now, or null. */
  unhealthy(): string | null {
    if (this.offline) return 'went offline';
    if (this.criticalAlarms.length > 0) return `critical alarm: ${this.criticalAlarms.join('; ')}`;
    if (this.healthMessages === 0) return 'published no health message during the window';
    return null;
  }
}

/**
 * Sends an `update` command ({id: correlationId, envelope} on `cmd/update`) to each device by its own topic
 * (no wildcard publish, so every device is named and answers), following each device's steps as they come.
 * With canaries: they go first, and the rest only once every canary reported done and then stayed healthy for
 * `canaryWindowMs`.
 */
export async function publishUpdate(options: PublishOptions): Promise<PublishReport> {
  const { client } = options;
  const log = (options.logger ?? silentLogger).child({ module: 'publish' });
  const correlationId = options.correlationId ?? randomUUID();
  const canaries = options.canary ?? [];
  const rest = options.devices.filter((d) => !canaries.includes(d));
  const onProgress = (p: DeviceProgress): void => {
    log.info({ ...p }, 'update step');
    options.onProgress?.(p);
  };
  const watches = new Map([...canaries, ...rest].map((d) => [d, new DeviceWatch(d, options, correlationId, options.request.version, onProgress, (o) => options.onOutcome?.(o))]));
  for (const entry of options.known ?? []) {
    const watch = watches.get(entry.device);
    if (watch) Object.assign(watch, { version: entry.version, watchWindowMs: entry.watchWindowMs });
  }
  const byTopic = new Map([...watches.values()].flatMap((w) => w.subscriptions.map((t) => [t, w] as const)));
  const onMessage = (topic: string, payload: Buffer): void => {
    const watch = byTopic.get(topic);
    if (!watch || payload.length === 0) return;
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      log.warn({ topic }, 'ignoring a message that is not JSON');
      return;
    }
    const problem = watch.onMessage(topic, json);
    if (problem) log.warn({ topic, problem }, 'ignoring a message that does not fit its schema');
  };
  client.on('message', onMessage);

  const send = async (devices: string[]): Promise<DeviceOutcome[]> => {
    for (const device of devices) {
      const watch = watches.get(device)!;
      const envelope = signCommand({ command: 'update', site: options.site, device, id: correlationId, args: options.request }, options.key);
      await client.publishAsync(watch.topics.command('update'), JSON.stringify({ id: correlationId, envelope }), { qos: 1 });
      watch.sent(options.replyTimeoutMs);
      log.info({ device, correlationId }, 'update sent');
    }
    return Promise.all(devices.map((d) => watches.get(d)!.outcome()));
  };

  try {
    await client.subscribeAsync([...byTopic.keys()], { qos: 1 });
    let canary: PublishReport['canary'] = null;
    if (canaries.length > 0) {
      const windows = canaries.map((d) => watches.get(d)!.watchWindowMs).filter((w): w is number => w !== null);
      options.onPhase?.({ phase: 'canary', devices: canaries, watchMs: windows.length > 0 ? Math.max(...windows) : null, windowMs: options.canaryWindowMs });
      let outcomes = await send(canaries);
      if (outcomes.every((o) => o.outcome === 'done')) {
        for (const w of watches.values()) w.healthMessages = 0;
        options.onPhase?.({ phase: 'canary-window', devices: canaries, windowMs: options.canaryWindowMs });
        await sleep(options.canaryWindowMs);
        outcomes = outcomes.map((o) => {
          const reason = watches.get(o.device)!.unhealthy();
          return reason ? { ...o, outcome: 'unhealthy', code: 'E_CANARY_UNHEALTHY', reason } : o;
        });
      }
      canary = { ok: outcomes.every((o) => o.outcome === 'done'), devices: outcomes };
      if (!canary.ok) {
        const reason = 'canaries not healthy: the rollout stopped before this device';
        log.warn({ canary: outcomes }, 'canaries not healthy: the rollout stops here');
        options.onPhase?.({ phase: 'stopped', devices: rest, reason });
        return { correlationId, canary, devices: rest.map((d) => watches.get(d)!.skip(reason)), ok: false };
      }
    }
    if (rest.length > 0) options.onPhase?.({ phase: 'rollout', devices: rest });
    const devices = await send(rest);
    return { correlationId, canary, devices, ok: devices.every((o) => o.outcome === 'done') };
  } finally {
    client.removeListener('message', onMessage);
    await client.unsubscribeAsync([...byTopic.keys()]).catch(() => undefined);
  }
}

/** The value when it fits the schema, else what is wrong with it. */
function check<T>(schema: z.ZodType<T>, value: unknown): T | string {
  const result = schema.safeParse(value);
  return result.success ? result.data : result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}
