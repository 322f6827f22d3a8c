import type { MqttClient } from 'mqtt';
import { SgmoeError } from '../errors';

/**
 * A wait on the client that ends by `ms` whatever the broker does: a request sent while it is away waits in
 * mqtt.js until it is back, which may be never. Past `ms` it fails with E_MQTT_LOST, naming `what`.
 */
export async function bounded<T>(client: MqttClient, work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const state = client.connected ? 'connected, but it did not answer' : 'the connection is lost';
      reject(new SgmoeError('E_MQTT_LOST', `${what}: no answer from the broker within ${(ms / 1000).toFixed(1)} s (${state})`, { what, ms }));
    }, ms);
  });
  void work.catch(() => undefined); // the race below may leave it behind
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
