import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import { silentLogger, type Logger } from '../log';
import { topicsFor, type Topics } from '../transport/topics';
import type { UpdateRequestInput } from './request';

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
    this.topics = topicsFor({ topicPrefix: options.topicPrefix ?? 'sgmoe/v1/{site}/{device}/', site: options.site, device });
  }

  get subscriptions(): string[] {
    return [this.topics.reply('update'), this.topics.status, this.topics.health, this.topics.alarm];
  }

  onMessage(topic: string, payload: Record<string, unknown>): void {
    if (topic === this.topics.status) this.offline = payload.state === 'offline';
    else if (topic === this.topics.health) this.healthMessages += 1;
    else if (topic === this.topics.alarm && payload.severity === 'critical') this.criticalAlarms.push(String(payload.message ?? payload.code));
    else if (topic === this.topics.reply('update') && payload.id === this.correlationId) this.onReply(payload);
  }

  /** Replies carry the agent's step events; the update ends with step done, or with an error. */
  private onReply(reply: Record<string, unknown>): void {
    const data = (reply.data ?? {}) as { step?: string; error?: { code: string; message: string } };
    const error = (reply.error ?? data.error) as { code: string; message: string } | undefined;
    if (reply.ok === false || data.step === 'failed' || data.step === 'rolled_back') {
      this.finish({ device: this.device, outcome: 'failed', reason: error ? `${error.code}: ${error.message}` : `update ended at ${data.step}` });
    } else if (data.step === 'done') {
      this.finish({ device: this.device, outcome: 'done' });
    }
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
    try {
      const json = JSON.parse(payload.toString('utf8'));
      if (json && typeof json === 'object') watch.onMessage(topic, json as Record<string, unknown>);
    } catch {
      log.warn({ topic }, 'ignoring a message that is not JSON');
    }
  };
  client.on('message', onMessage);

  const send = async (devices: string[]): Promise<DeviceOutcome[]> => {
    for (const device of devices) {
      const topic = watches.get(device)!.topics.command('update');
      await client.publishAsync(topic, JSON.stringify({ id: correlationId, args: options.request }), { qos: 1 });
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
