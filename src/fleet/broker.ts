import { connectAsync, type MqttClient } from 'mqtt';
import { SgmoeError, errorMessage } from '../errors';
import { bounded } from '../transport/bounded';

const EXAMPLE = 'for example --broker mqtt://broker.plant.local:1883';
const SCHEMES = new Set(['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:']);
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET']);

/** The pause between attempts to reach a broker that went away (mqtt.js resubscribes once it is back). */
export const RECONNECT_MS = 2_000;
/** How long a clean disconnect may take before the connection is dropped. */
const CLOSE_MS = 2_000;

/**
 * The operator's connection to the plant's broker (publish, rollback, cmd, fleet status). A typo in the URL, a
 * broker that does not answer and a missing flag each fail at once with their own code and a sentence that names
 * the flag, instead of an internal error from deep inside the MQTT client. Once connected, a lost broker is
 * reconnected to (the retained status tells what happened meanwhile): see `BrokerLink` and `bounded`.
 */
export async function connectOperator(url: string | undefined, clientId: string, connectTimeoutMs = 10_000): Promise<MqttClient> {
  if (!url) throw new SgmoeError('E_USAGE', `expected --broker, the plant's MQTT broker: ${EXAMPLE}`);
  checkBrokerUrl(url);
  let client: MqttClient;
  try {
    // No retries for the first connect: a wrong address fails now, not after a wait.
    client = await connectAsync(url, { clientId, connectTimeout: connectTimeoutMs, reconnectPeriod: RECONNECT_MS }, false);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code && UNREACHABLE.has(code) ? `${code === 'ECONNREFUSED' ? 'nothing listens there' : code}` : errorMessage(err);
    throw new SgmoeError('E_MQTT_UNREACHABLE', `--broker ${url}: cannot connect (${why}); check the host and port, ${EXAMPLE}`, { url, cause: code }, { cause: err });
  }
  // Each failed reconnect attempt is an 'error' event; BrokerLink says what the operator needs to know of them.
  client.on('error', () => undefined);
  return client;
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

export interface Outage {
  lost: number;
  /** Null while the broker is still away. */
  back: number | null;
  /** What the last failed attempt said (ECONNREFUSED...), when one failed. */
  error: string | null;
}

/**
 * Follows an operator connection: when it is lost and when it is back. The client reconnects by itself and
 * resubscribes; what a command waited for meanwhile is told by the retained status once it is back.
 */
export class BrokerLink {
  readonly outages: Outage[] = [];
  private readonly listeners: Array<[string, (...args: never[]) => void]>;

  constructor(
    private readonly client: MqttClient,
    on: { lost?: (outage: Outage) => void; back?: (outage: Outage) => void } = {},
  ) {
    const current = () => this.outages.at(-1);
    this.listeners = [
      ['offline', () => {
        const outage: Outage = { lost: Date.now(), back: null, error: null };
        this.outages.push(outage);
        on.lost?.(outage);
      }],
      ['error', (err: Error) => {
        const outage = current();
        if (outage && outage.back === null) outage.error = errorMessage(err);
      }],
      ['connect', () => {
        const outage = current();
        if (!outage || outage.back !== null) return;
        outage.back = Date.now();
        on.back?.(outage);
      }],
    ];
    for (const [event, listener] of this.listeners) client.on(event as 'connect', listener as () => void);
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** The outage still going on, or null. */
  get down(): Outage | null {
    const outage = this.outages.at(-1);
    return outage && outage.back === null ? outage : null;
  }

  /** The first outage that overlaps [from, to] (ms since epoch). */
  during(from: number, to: number): Outage | null {
    return this.outages.find((o) => o.lost <= to && (o.back === null || o.back >= from)) ?? null;
  }

  stop(): void {
    for (const [event, listener] of this.listeners) this.client.off(event as 'connect', listener as () => void);
  }
}

/** An outage in words: "lost at 12:00:01 (ECONNREFUSED), back after 4.2 s" or "lost at … and not back". */
export function describeOutage(o: Outage): string {
  const why = o.error ? ` (${o.error})` : '';
  const back = o.back === null ? 'not back' : `back after ${((o.back - o.lost) / 1000).toFixed(1)} s`;
  return `the broker connection was lost at ${new Date(o.lost).toISOString()}${why}, ${back}`;
}

/** Ends the connection: a clean disconnect when the broker is there (bounded), else at once; never waits for a broker that is gone. */
export async function closeOperator(client: MqttClient): Promise<void> {
  if (client.connected) {
    try {
      await bounded(client, client.endAsync(), CLOSE_MS, 'disconnecting');
      return;
    } catch {
      // A disconnect still waiting for acknowledgements keeps its socket: drop it.
      client.stream?.destroy();
    }
  }
  await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
}
