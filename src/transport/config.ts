import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { IClientOptions } from 'mqtt';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';
import { validate } from '../validate';

/** One MQTT topic level: no separators or wildcards, so it can sit inside the prefix. */
const topicLevel = z
  .string()
  .min(1)
  .regex(/^[^/+#\s]+$/, 'one MQTT topic level (no "/", "+", "#" or spaces)');

const url = z
  .string()
  .regex(/^(mqtt|mqtts|ws|wss):\/\/[^\s]+$/, 'a broker URL such as mqtt://host:1883, mqtts://, ws:// or wss://');

export const transportConfigSchema = z
  .object({
    url: url.default('mqtt://127.0.0.1:1883'),
    site: topicLevel.default('default'),
    /** Defaults to the host name, made safe for a topic level. */
    device: topicLevel.default(() => hostname().replace(/[/+#\s]/g, '-')),
    /** Defaults to `sgmoe-{device}`; fixed per device so the broker can tell reconnects from new nodes. */
    clientId: z.string().min(1).max(128).optional(),
    username: z.string().optional(),
    password: z.string().optional(),
    /** File paths of PEM files; read when the client connects. */
    tls: z
      .object({
        ca: z.string().min(1).optional(),
        cert: z.string().min(1).optional(),
        key: z.string().min(1).optional(),
        servername: z.string().min(1).optional(),
        rejectUnauthorized: z.boolean().default(true),
      })
      .refine((t) => !t.cert === !t.key, 'tls.cert and tls.key go together (client certificate and its key)')
      .optional(),
    /** Seconds, as in the MQTT CONNECT packet. */
    keepalive: z.number().int().min(0).max(65535).default(30),
    /** 4 = MQTT 3.1.1 (what the embedded aedes broker speaks), 5 = MQTT 5. */
    protocolVersion: z.union([z.literal(4), z.literal(5)]).default(4),
    connectTimeoutMs: z.number().int().positive().default(10_000),
    /** Exponential backoff between connection attempts, doubling from minMs up to maxMs. */
    reconnect: z
      .object({ minMs: z.number().int().positive().default(500), maxMs: z.number().int().positive().default(30_000) })
      .refine((r) => r.minMs <= r.maxMs, 'reconnect.minMs cannot exceed reconnect.maxMs')
      .default({ minMs: 500, maxMs: 30_000 }),
    /** `{site}` and `{device}` are substituted; must end with "/". */
    topicPrefix: z
      .string()
      .regex(/^[^+#]*\/$/, 'a topic prefix ending with "/" and without wildcards')
      .default('sgmoe/v1/{site}/{device}/'),
    /** QoS of results (docs/DESIGN.md: 1); 0 exists for benchmarks and best-effort links. */
    resultQos: z.union([z.literal(0), z.literal(1)]).default(1),
    /** How many outbox messages may await their PUBACK at once. */
    inFlight: z.number().int().min(1).max(65535).default(100),
    outbox: z
      .object({
        /** SQLite file; absent = the caller passes one (e.g. the audit log's database). */
        path: z.string().min(1).optional(),
        /** Results, rejections and health reports kept while the broker is away, together; beyond it the oldest go first. */
        maxResults: z.number().int().positive().default(100_000),
        /** `full` survives power loss; `normal` survives a process crash and is faster (WAL either way). */
        synchronous: z.enum(['full', 'normal']).default('full'),
      })
      .default({ maxResults: 100_000, synchronous: 'full' }),
    commands: z
      .object({
        maxPayloadBytes: z.number().int().positive().default(64 * 1024),
        /** PEM files of the operator keys whose signed envelopes may change this device (default: fleet.trustedKeys). */
        trustedKeys: z.array(z.string().min(1)).optional(),
        /** How far an envelope's timestamp may be from the device's clock, either way (src/transport/README.md). */
        freshnessS: z.number().int().positive().default(300),
        /** Where nonces seen within the window are kept across restarts (default: beside the outbox). */
        nonceFile: z.string().min(1).optional(),
      })
      .strict()
      .default({ maxPayloadBytes: 64 * 1024, freshnessS: 300 }),
    /** When present, the node starts an aedes broker in-process on 127.0.0.1 and connects to it. */
    embeddedBroker: z.object({ port: z.number().int().min(0).max(65535).default(1883) }).optional(),
  })
  .strict();

export type TransportConfigInput = z.input<typeof transportConfigSchema>;
export type TransportConfig = z.output<typeof transportConfigSchema>;
export type OutboxConfig = TransportConfig['outbox'];

/** Validates an MQTT transport config (from a file or flags); defaults filled in. */
export function parseTransportConfig(input: unknown, where = 'mqtt config'): TransportConfig {
  return validate(transportConfigSchema, input ?? {}, { code: 'E_CONFIG_INVALID', where });
}

export function clientIdOf(config: TransportConfig): string {
  return config.clientId ?? `sgmoe-${config.device}`;
}

/**
 * mqtt.js options for a connection with this config's credentials and TLS (PEM files read now): the transport's
 * own, and the node's other connections to the same broker (image sources, package chunks).
 */
export function connectOptionsFor(config: TransportConfig, clientId: string): IClientOptions {
  const tls = config.tls;
  return {
    clientId,
    username: config.username,
    password: config.password,
    keepalive: config.keepalive,
    protocolVersion: config.protocolVersion,
    connectTimeout: config.connectTimeoutMs,
    // The transport's outbox is its session state: a clean session, and reconnects are the transport's own.
    clean: true,
    reconnectPeriod: 0,
    ...(tls
      ? {
          ca: tls.ca ? readPem(tls.ca, 'tls.ca') : undefined,
          cert: tls.cert ? readPem(tls.cert, 'tls.cert') : undefined,
          key: tls.key ? readPem(tls.key, 'tls.key') : undefined,
          servername: tls.servername,
          rejectUnauthorized: tls.rejectUnauthorized,
        }
      : {}),
  };
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SgmoeError('E_MQTT_TLS', `${field}: expected a readable PEM file, found ${path} unreadable (${errorMessage(err)})`, { path }, { cause: err });
  }
}
