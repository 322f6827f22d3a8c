import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { SgmoeError, errorMessage } from '../../errors';
import { BaseSource, LIVE_DEFAULTS, type SourceOptions } from '../source';

/** MQTT cannot be paused per topic, so this source always drops the oldest frame when its queue is full. */
export interface MqttSourceOptions extends Omit<SourceOptions, 'policy'> {
  /** The client to subscribe with (shared with the node, left connected on stop), or a broker URL to connect to. */
  mqtt: MqttClient | string;
  /** Credentials, TLS and client id when `mqtt` is a URL (the node passes its broker's). */
  connectOptions?: IClientOptions;
  /** Subscription QoS (default 0: a live camera's frame that is lost is soon replaced by the next one). */
  qos?: 0 | 1;
}

/** `mqtt:TOPIC` images published as binary payloads (any encoded format); wildcards allowed. */
export class MqttSource extends BaseSource {
  readonly kind = 'mqtt' as const;

  constructor(
    readonly topic: string,
    private readonly settings: MqttSourceOptions,
  ) {
    super(`mqtt:${topic}`, { ...settings, policy: 'drop-oldest' }, LIVE_DEFAULTS);
  }

  protected async run(signal: AbortSignal): Promise<void> {
    const owned = typeof this.settings.mqtt === 'string';
    const client = typeof this.settings.mqtt === 'string' ? mqtt.connect(this.settings.mqtt, { ...this.settings.connectOptions, reconnectPeriod: 1000 }) : this.settings.mqtt;
    const onMessage = (topic: string, payload: Buffer): void => {
      if (!topicMatches(this.topic, topic)) return;
      // Never waits: the queue drops the oldest frame when full.
      void this.emit({ id: this.nextId(), source: this.name, receivedAt: Date.now(), bytes: payload, meta: { topic } });
    };
    const onError = (err: Error): void => {
      this.reportError(new SgmoeError('E_SOURCE_UNREACHABLE', `expected the MQTT broker to accept us, found: ${errorMessage(err)}`, undefined, { cause: err }));
    };
    // Subscribing on every connect (not while offline, where mqtt.js would fail it on the next disconnect).
    const subscribe = (): void => {
      client.subscribe(this.topic, { qos: this.settings.qos ?? 0 }, (err) => {
        if (err && !signal.aborted) {
          this.reportError(new SgmoeError('E_SOURCE_SUBSCRIBE', `expected the broker to accept a subscription to ${this.topic}, found: ${errorMessage(err)}`));
        }
      });
    };
    client.on('message', onMessage);
    client.on('connect', subscribe);
    if (owned) client.on('error', onError);
    if (client.connected) subscribe();
    try {
      await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve())));
    } finally {
      client.off('message', onMessage);
      client.off('connect', subscribe);
      client.off('error', onError);
      if (owned) await client.endAsync(true);
      else client.unsubscribe(this.topic);
    }
  }
}

/** MQTT topic filter matching: `+` is one level, a final `#` any number of levels (including none). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i === f.length - 1;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}
