/** `scheme://user:secret@` anywhere in a text: the userinfo of a URL, which may hold credentials. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>]*@/gi;
const SECRET_KEYS = new Set(['password', 'passphrase', 'secret', 'token']);

/** The text with the userinfo of every URL in it replaced by `***` (`mqtt://***@broker:1883`). */
export function redactText(text: string): string {
  return text.replace(USERINFO, '$1***@');
}

/**
 * A copy of a JSON-like value fit to leave the device (replies, status, logs, the dashboard): URL userinfo
 * masked in every string, and the values of password-like fields replaced by `***`.
 */
export function redact<T>(value: T): T {
  return redactValue(value, 0) as T;
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 32 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value instanceof Date || value instanceof Error || Buffer.isBuffer(value)) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.has(k.toLowerCase()) && v !== undefined ? '***' : redactValue(v, depth + 1)]),
  );
}
