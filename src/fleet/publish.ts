import { randomUUID, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import type { z } from 'zod';
import { silentLogger, type Logger } from '../log';
import { alarmPayloadSchema, healthPayloadSchema, replyPayloadSchema, statusPayloadSchema, type ReplyPayload } from '../protocol/payloads';
import { DEFAULT_TOPIC_PREFIX, topicsFor, type Topics } from '../protocol/topics';
import { updateReplyDataSchema, type UpdateRequestInput } from '../protocol/update';
import { signCommand } from './command-signature';

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
  /** How long a device has to report its update done (download, self-test, its own health watch). */
  replyTimeoutMs: number;
  /** How long canaries are watched after their update: they must stay online, raise no critical alarm and report health. */
  canaryWindowMs: number;
  logger?: Logger;
}

export type DeviceOutcome =
  | { device: string; outcome: 'done' }
  | { device: string; outcome: 'failed' | 'timeout' | 'unhealthy'; reason: string };

export interface PublishReport {
  correlationId: string;
  /** Null without canaries. */
  canary: { ok: boolean; devices: DeviceOutcome[] } | null;
  /** The devices after the canaries; empty when the canaries stopped the rollout. */
  devices: DeviceOutcome[];
  ok: boolean;
}

/** What the operator hears from one device while its update runs. */
class DeviceWatch {
  readonly topics: Topics;
  offline = false;
  criticalAlarms: string[] = [];
  healthMessages = 0;
  private settle: ((o: DeviceOutcome) => void) | null = null;
  private final: DeviceOutcome | null = null;

  constructor(
    readonly device: string,
    options: Pick<PublishOptions, 'site' | 'topicPrefix'>,
    private readonly correlationId: string,
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

  /** Replies carry the agent's step events; the update ends with step done, or with an error. */
  private onReply(reply: ReplyPayload): string | null {
    if (!reply.ok) {
      this.finish({ device: this.device, outcome: 'failed', reason: `${reply.error.code}: ${reply.error.message}` });
      return null;
    }
    const progress = check(updateReplyDataSchema, reply.data);
    if (typeof progress === 'string') return progress;
    if (progress.step === 'failed' || progress.step === 'rolled_back') {
      const reason = 'error' in progress && progress.error ? `${progress.error.code}: ${progress.error.message}` : `update ended at ${progress.step}`;
      this.finish({ device: this.device, outcome: 'failed', reason });
    } else if (progress.step === 'done') {
      this.finish({ device: this.device, outcome: 'done' });
    }
    return null;
  }

  private finish(outcome: DeviceOutcome): void {
    this.final ??= outcome;
    this.settle?.(this.final);
  }

  outcome(timeoutMs: number): Promise<DeviceOutcome> {
    if (this.final) return Promise.resolve(this.final);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.finish({ device: this.device, outcome: 'timeout', reason: `no final update reply within ${timeoutMs} ms` }), timeoutMs);
      this.settle = (o) => {
        clearTimeout(timer);
        resolve(o);
      };
    });
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
 * Sends an `update` command ({id: correlationId, args: request} on `cmd/update`) to each device by its own topic
 * (no wildcard publish, so every device is named and answers). With canaries: they go first, and the rest only
 * once every canary reported done and then stayed healthy for `canaryWindowMs`.
 */
export async function publishUpdate(options: PublishOptions): Promise<PublishReport> {
  const { client } = options;
  const log = (options.logger ?? silentLogger).child({ module: 'publish' });
  const correlationId = options.correlationId ?? randomUUID();
  const canaries = options.canary ?? [];
  const rest = options.devices.filter((d) => !canaries.includes(d));
  const watches = new Map([...canaries, ...rest].map((d) => [d, new DeviceWatch(d, options, correlationId)]));
  const byTopic = new Map([...watches.values()].flatMap((w) => w.subscriptions.map((t) => [t, w] as const)));
  const onMessage = (topic: string, payload: Buffer): void => {
    const watch = byTopic.get(topic);
    if (!watch) return;
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
      const topic = watches.get(device)!.topics.command('update');
      const envelope = signCommand({ command: 'update', site: options.site, device, id: correlationId, args: options.request }, options.key);
      await client.publishAsync(topic, JSON.stringify({ id: correlationId, envelope }), { qos: 1 });
      log.info({ device, topic, correlationId }, 'update sent');
    }
    return Promise.all(devices.map((d) => watches.get(d)!.outcome(options.replyTimeoutMs)));
  };

  try {
    await client.subscribeAsync([...byTopic.keys()], { qos: 1 });
    let canary: PublishReport['canary'] = null;
    if (canaries.length > 0) {
      let outcomes = await send(canaries);
      if (outcomes.every((o) => o.outcome === 'done')) {
        for (const w of watches.values()) w.healthMessages = 0;
        await sleep(options.canaryWindowMs);
        outcomes = canaries.map((device) => {
          const reason = watches.get(device)!.unhealthy();
          return reason ? { device, outcome: 'unhealthy', reason } : { device, outcome: 'done' };
        });
      }
      canary = { ok: outcomes.every((o) => o.outcome === 'done'), devices: outcomes };
      if (!canary.ok) {
        log.warn({ canary: outcomes }, 'canaries not healthy: the rollout stops here');
        return { correlationId, canary, devices: [], ok: false };
      }
    }
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
