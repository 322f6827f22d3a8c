import type { MqttClient } from 'mqtt';
import { SgmoeError } from '../errors';

/**
 * A wait that ends by `ms` whatever `work` does: past `ms` it fails with the error `late` makes. `work` goes on; its
 * later outcome is ignored.
 */
export async function within<T>(work: Promise<T>, ms: number, late: () => SgmoeError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
  });
  void work.catch(() => undefined); // the race below may leave it behind
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A wait on the client that ends by `ms` whatever the broker does: a request sent while it is away waits in
 * mqtt.js until it is back, which may be never. Past `ms` it fails with E_MQTT_LOST, naming `what`.
 */
export function bounded<T>(client: MqttClient, work: Promise<T>, ms: number, what: string): Promise<T> {
  return within(work, ms, () => {
    const state = client.connected ? 'connected, but it did not answer' : 'the connection is lost';
    return new SgmoeError('E_MQTT_LOST', `${what}: no answer from the broker within ${(ms / 1000).toFixed(1)} s (${state})`, { what, ms });
  });
}
