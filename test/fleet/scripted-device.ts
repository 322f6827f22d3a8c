import { connectAsync, type MqttClient } from 'mqtt';
import { HEALTH_SCHEMA, REPLY_SCHEMA, STATUS_SCHEMA } from '../../src/protocol/payloads';
import { topicsFor, type Topics } from '../../src/protocol/topics';
import { waitUntil } from '../helpers/mqtt';

/**
 * A device played by the test, as the node behaves on the wire: its retained status (a last will of `offline lost`
 * beside it, written at connect), its status again after every reconnect, a health report every 100 ms, and `answer`
 * for what it does with an update command.
 */
export class ScriptedDevice {
  readonly topics: Topics;
  received = 0;
  /** Set once the broker published its last will (`watchWill`). */
  seenOffline = false;
  client!: MqttClient;
  private health: NodeJS.Timeout | undefined;

  private constructor(
    private readonly url: string,
    private readonly site: string,
    readonly id: string,
    public info: Record<string, unknown>,
  ) {
    this.topics = topicsFor({ topicPrefix: 'sgmoe/v1/{site}/{device}/', site, device: id });
  }

  static async start(
    url: string,
    site: string,
    id: string,
    info: Record<string, unknown>,
    answer?: (correlationId: string, device: ScriptedDevice) => Promise<void>,
  ): Promise<ScriptedDevice> {
    const device = new ScriptedDevice(url, site, id, info);
    await device.connect();
    await device.client.subscribeAsync(device.topics.command('update'), { qos: 1 });
    device.client.on('message', (topic, payload) => {
      if (topic !== device.topics.command('update')) return;
      device.received += 1;
      void answer?.(JSON.parse(payload.toString()).id as string, device);
    });
    device.health = setInterval(() => {
      const health = { schema: HEALTH_SCHEMA, ts: new Date().toISOString(), uptimeS: 1, outbox: { pending: 0, queued: 0, sent: 0, dropped: 0 }, counters: {} };
      void device.client.publishAsync(device.topics.health, JSON.stringify(health)).catch(() => undefined);
    }, 100);
    return device;
  }

  /** Connects with its last will, and says it is online; again at every reconnect, as the node's birth status does. */
  private async connect(): Promise<void> {
    const ts = new Date().toISOString();
    const will = { schema: STATUS_SCHEMA, state: 'offline', reason: 'lost', ts, willSetAt: ts, site: this.site, device: this.id, clientId: this.id, info: this.info };
    this.client = await connectAsync(this.url, { clientId: this.id, reconnectPeriod: 500, will: { topic: this.topics.status, payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: true } });
    this.client.on('error', () => undefined);
    this.client.on('connect', () => void this.status('online', this.info).catch(() => undefined));
    await this.status('online', this.info);
  }

  status(state: 'online' | 'offline', info: Record<string, unknown>): Promise<unknown> {
    this.info = info;
    const reason = state === 'online' ? 'connected' : 'lost';
    const payload = { schema: STATUS_SCHEMA, state, reason, ts: new Date().toISOString(), site: this.site, device: this.id, clientId: this.id, info };
    return this.client.publishAsync(this.topics.status, JSON.stringify(payload), { qos: 1, retain: true });
  }

  progress(correlationId: string, step: string, version: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    const data = { correlationId, step, version, message: step, ...extra, ts: new Date().toISOString() };
    return this.client.publishAsync(this.topics.reply('update'), JSON.stringify({ schema: REPLY_SCHEMA, id: correlationId, command: 'update', ts: data.ts, ok: true, progress: true, data }), { qos: 1 });
  }

  done(correlationId: string, version: string): Promise<unknown> {
    const data = { step: 'done', version, previous: null };
    return this.client.publishAsync(this.topics.reply('update'), JSON.stringify({ schema: REPLY_SCHEMA, id: correlationId, command: 'update', ts: new Date().toISOString(), ok: true, data }), { qos: 1 });
  }

  /** Follows its status on `watcher`, to know when the broker published its last will. */
  async watchWill(watcher: MqttClient): Promise<void> {
    watcher.on('message', (topic, payload) => {
      if (topic === this.topics.status && payload.length > 0 && JSON.parse(payload.toString()).state === 'offline') this.seenOffline = true;
    });
    await watcher.subscribeAsync(this.topics.status, { qos: 1 });
  }

  /** Killed (no DISCONNECT: the broker publishes its last will), then started again: connected anew, its status online. */
  async restart(): Promise<void> {
    this.seenOffline = false;
    const old = this.client;
    await new Promise<void>((resolve) => old.end(true, {}, () => resolve()));
    await waitUntil(() => this.seenOffline, 10_000, `the last will of ${this.id}`);
    await this.connect();
  }

  /** Stops, and leaves no retained status or health behind. */
  async close(): Promise<void> {
    clearInterval(this.health);
    await this.client.publishAsync(this.topics.status, '', { qos: 1, retain: true });
    await this.client.publishAsync(this.topics.health, '', { qos: 1, retain: true });
    await this.client.endAsync();
  }
}
