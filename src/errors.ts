/**
 * Every error the SDK raises on purpose carries a stable `code` (E_FRAME_DECODE, E_MANIFEST_INVALID, ...)
 * that callers, logs, audit rows and MQTT replies can match on; the message says what was expected and
 * what was found.
 */
export class SgmoeError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;

  constructor(code: string, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SgmoeError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: string; message: string; details?: Record<string, unknown> } {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** Code of any thrown value: our own codes pass through, anything else is E_INTERNAL. */
export function errorCode(err: unknown): string {
  return err instanceof SgmoeError ? err.code : 'E_INTERNAL';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
