import { connectAsync, type MqttClient } from 'mqtt';
import { SgmoeError, errorMessage } from '../errors';

const EXAMPLE = 'for example --broker mqtt://broker.plant.local:1883';
const SCHEMES = new Set(['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:']);
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET']);

/**
 * The operator's connection to the plant's broker (publish, rollback, cmd, fleet status). A typo in the URL, a
 * broker that does not answer and a missing flag each fail at once with their own code and a sentence that names
 * the flag, instead of an internal error from deep inside the MQTT client.
 */
export async function connectOperator(url: string | undefined, clientId: string, connectTimeoutMs = 10_000): Promise<MqttClient> {
  if (!url) throw new SgmoeError('E_USAGE', `expected --broker, the plant's MQTT broker: ${EXAMPLE}`);
  checkBrokerUrl(url);
  try {
    return await connectAsync(url, { clientId, connectTimeout: connectTimeoutMs, reconnectPeriod: 0 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code && UNREACHABLE.has(code) ? `${code === 'ECONNREFUSED' ? 'nothing listens there' : code}` : errorMessage(err);
    throw new SgmoeError('E_MQTT_UNREACHABLE', `--broker ${url}: cannot connect (${why}); check the host and port, ${EXAMPLE}`, { url, cause: code }, { cause: err });
  }
}

/** `mqtt://host[:port]` and its TLS and WebSocket variants; anything else is E_BROKER_URL. */
export function checkBrokerUrl(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !SCHEMES.has(parsed.protocol) || !parsed.hostname) {
    throw new SgmoeError('E_BROKER_URL', `--broker ${JSON.stringify(url)} is not a broker URL: expected mqtt://host:port (or mqtts://, ws://, wss://), ${EXAMPLE}`, { url });
  }
}
