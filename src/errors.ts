/**
 * Every error the SDK raises on purpose carries a stable `code` from the registry below, which callers, logs,
 * audit rows and MQTT replies match on; the message says what was expected and what was found. Code decides
 * by a code's category, never by its spelling.
 */

/**
 * - `bad-input`: a frame, command, file or flag that is wrong; the caller fixes it and nothing else is affected.
 * - `configuration`: the node or the command is set up wrongly (config, keys, profile, a port taken).
 * - `integrity`: a package, signature, store or database is not what it claims to be; refused, never used.
 * - `transient`: the world around the node (network, broker, disk, busy slot); retrying later may work.
 * - `internal`: a defect or an unexpected failure inside the SDK.
 */
export type ErrorCategory = 'bad-input' | 'configuration' | 'integrity' | 'transient' | 'internal';

export const ERROR_CODES = {
  // frames and engine input
  E_FRAME_DECODE: 'bad-input',
  E_FRAME_EMPTY: 'bad-input',
  E_FRAME_FORMAT: 'bad-input',
  E_FRAME_RAW: 'bad-input',
  E_FRAME_RAW_SIZE: 'bad-input',
  E_FRAME_READ: 'bad-input',
  E_FRAME_ROI: 'bad-input',
  E_FRAME_TOO_LARGE: 'bad-input',
  E_FRAME_TOO_SMALL: 'bad-input',
  E_BACKPRESSURE: 'transient',
  E_TENSOR_STALE: 'transient',
  E_INPUT_SHAPE: 'internal',
  E_INPUT_KIND: 'bad-input',
  // sensor sample blocks (ingest/kinds/signal)
  E_SIGNAL_EMPTY: 'bad-input',
  E_SIGNAL_TRUNCATED: 'bad-input',
  E_SIGNAL_FORMAT: 'bad-input',
  E_SIGNAL_RATE: 'bad-input',
  E_SIGNAL_CHANNELS: 'bad-input',
  E_SIGNAL_NAN: 'bad-input',
  E_SIGNAL_FLAT: 'bad-input',
  E_SIGNAL_SHORT: 'bad-input',
  // sources
  E_SOURCE_URI: 'configuration',
  E_SOURCE_NOT_FOUND: 'configuration',
  E_SOURCE_AUTH: 'configuration',
  E_SOURCE_DECODER: 'transient',
  E_SOURCE_INVALID_DATA: 'bad-input',
  E_SOURCE_BUSY: 'transient',
  E_SOURCE_FAILED: 'transient',
  E_SOURCE_HTTP: 'transient',
  E_SOURCE_IO: 'transient',
  E_SOURCE_STOPPED: 'transient',
  E_SOURCE_STOP_TIMEOUT: 'transient',
  E_SOURCE_STREAM: 'transient',
  E_SOURCE_SUBSCRIBE: 'transient',
  E_SOURCE_TIMEOUT: 'transient',
  E_SOURCE_UNREACHABLE: 'transient',
  // packages, self-test and the engine
  E_MANIFEST_INVALID: 'integrity',
  E_PART_MISSING: 'integrity',
  E_HASH_MISMATCH: 'integrity',
  E_SHAPE_MISMATCH: 'integrity',
  E_SELFTEST_INVALID: 'integrity',
  E_SELFTEST_FAILED: 'integrity',
  E_BUDGET_UNREACHABLE: 'bad-input',
  E_PROVIDER_UNAVAILABLE: 'configuration',
  E_PROFILE_NOT_FOUND: 'configuration',
  E_PROFILE_INVALID: 'configuration',
  E_ENGINE_DISPOSED: 'transient',
  E_ENGINE_FAILED: 'internal',
  E_ENGINE_STATE: 'internal',
  // configuration and the command line
  E_CONFIG_INVALID: 'configuration',
  E_FILE_UNREADABLE: 'transient',
  E_USAGE: 'bad-input',
  E_BENCH_NEEDS_SOURCE: 'configuration',
  // audit log
  E_AUDIT_NOT_FOUND: 'configuration',
  E_AUDIT_SCHEMA: 'integrity',
  E_AUDIT_UNREADABLE: 'integrity',
  E_AUDIT_UNWRITABLE: 'transient',
  E_AUDIT_LOCKED: 'transient',
  E_AUDIT_WRITE: 'transient',
  E_AUDIT_RECOVERED: 'integrity',
  E_REVIEW_FRAME: 'bad-input',
  E_REVIEW_INVALID: 'bad-input',
  E_DATASET_OUT: 'configuration',
  E_DATASET_WRITE: 'transient',
  // MQTT transport, outbox, embedded broker and commands
  E_MQTT_AUTH: 'configuration',
  E_MQTT_TLS: 'configuration',
  E_BROKER_URL: 'bad-input',
  E_MQTT_CONNECTION: 'transient',
  E_MQTT_REFUSED: 'transient',
  E_MQTT_UNREACHABLE: 'transient',
  E_MQTT_LOST: 'transient',
  E_OUTBOX_OPEN: 'transient',
  E_OUTBOX_WRITE: 'transient',
  E_OUTBOX_CLOSED: 'transient',
  E_OUTBOX_RECOVERED: 'integrity',
  E_STORAGE_UNWRITABLE: 'transient',
  E_TRANSPORT_STATE: 'internal',
  E_BROKER_LISTEN: 'configuration',
  E_BROKER_STATE: 'internal',
  E_CMD_TOO_LARGE: 'bad-input',
  E_CMD_JSON: 'bad-input',
  E_CMD_INVALID: 'bad-input',
  E_CMD_UNKNOWN: 'bad-input',
  E_CMD_UNSUPPORTED: 'bad-input',
  E_CMD_UNAUTHORISED: 'bad-input',
  E_CMD_STALE: 'bad-input',
  E_CMD_REPLAYED: 'bad-input',
  E_CMD_EXPIRED: 'transient',
  E_CMD_TIMEOUT: 'transient',
  E_CANARY_UNHEALTHY: 'integrity',
  E_CMD_FAILED: 'internal',
  // fleet updates
  E_KEY_INVALID: 'configuration',
  E_KEY_WRITE: 'configuration',
  E_KEY_EXISTS: 'configuration',
  E_PACKAGE_NAME: 'bad-input',
  E_PACK_ENTRY: 'bad-input',
  E_SIGNATURE_MISSING: 'integrity',
  E_SIGNATURE_INVALID: 'integrity',
  E_SIGNATURE_UNKNOWN_KEY: 'integrity',
  E_UNPACK_INVALID: 'integrity',
  E_UNPACK_LIMIT: 'integrity',
  E_UNPACK_UNSAFE: 'integrity',
  E_VERSION_INVALID: 'bad-input',
  E_VERSION_MISMATCH: 'integrity',
  E_VERSION_NOT_NEWER: 'bad-input',
  E_VERSION_CONFLICT: 'bad-input',
  E_UPDATE_INVALID: 'bad-input',
  E_UPDATE_UNSUPPORTED: 'configuration',
  E_UPDATE_BUSY: 'transient',
  E_DEVICE_UNKNOWN: 'bad-input',
  E_DEVICE_OFFLINE: 'transient',
  E_UPDATE_REPLACED: 'transient',
  E_UPDATE_INTERRUPTED: 'transient',
  E_DOWNLOAD_FAILED: 'transient',
  E_DOWNLOAD_HTTP: 'transient',
  E_DOWNLOAD_NOT_SERVED: 'configuration',
  E_DOWNLOAD_REFUSED: 'transient',
  E_DOWNLOAD_DNS: 'transient',
  E_DOWNLOAD_TLS: 'configuration',
  E_DOWNLOAD_URL: 'configuration',
  E_DOWNLOAD_TIMEOUT: 'transient',
  E_DOWNLOAD_TOO_LARGE: 'integrity',
  E_HEALTH_REGRESSION: 'transient',
  E_ROLLBACK: 'transient',
  E_ROLLBACK_NONE: 'bad-input',
  E_STORE_EMPTY: 'configuration',
  E_STORE_CORRUPT: 'integrity',
  E_STORE_IN_USE: 'transient',
  // node and dashboard
  E_NODE_STOPPING: 'transient',
  E_NODE_RUNNING: 'internal',
  E_DASHBOARD_LISTEN: 'configuration',
  E_DASHBOARD_METHOD: 'bad-input',
  E_DASHBOARD_NOT_FOUND: 'bad-input',
  E_DASHBOARD_QUERY: 'bad-input',
  E_DASHBOARD_HOST: 'bad-input',
  E_DASHBOARD_ORIGIN: 'bad-input',
  E_DASHBOARD_BODY: 'bad-input',
  E_DASHBOARD_TOKEN: 'configuration',
  E_DASHBOARD_UNAUTHORISED: 'bad-input',
  // routing-health alarms (audit/health.ts), published with the alarm
  E_ROUTING_ROUTER_COLLAPSE: 'transient',
  E_ROUTING_EXPERT_STARVED: 'transient',
  E_ROUTING_DRIFT: 'transient',
  E_ROUTING_EARLY_EXIT_RATE: 'transient',
  E_ROUTING_ANOMALY_RATE: 'transient',
  E_ROUTING_SCORE_DRIFT: 'transient',
  // condition-monitoring alarms (maintenance/alarms.ts)
  E_CONDITION_CHANGE: 'transient',
  E_REGIME_UNKNOWN: 'transient',
  E_INTERNAL: 'internal',
} as const satisfies Record<string, ErrorCategory>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SgmoeError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SgmoeError';
    this.code = code;
    this.details = details;
  }

  get category(): ErrorCategory {
    return ERROR_CODES[this.code];
  }

  toJSON(): { code: string; message: string; details?: Record<string, unknown> } {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** Code of any thrown value: our own codes pass through, anything else is E_INTERNAL. */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof SgmoeError ? err.code : 'E_INTERNAL';
}

export function errorCategory(err: unknown): ErrorCategory {
  return ERROR_CODES[errorCode(err)];
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
