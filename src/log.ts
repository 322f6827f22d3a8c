import pino, { type Logger } from 'pino';
import { redact } from './redact';

export type { Logger };

/**
 * Structured logs (JSON lines) to stderr, so stdout stays free for command output such as
 * `sgmoe infer`'s one decision per line. Level from SGMOE_LOG_LEVEL (default info). No URL's credentials reach a line.
 */
export function createLogger(name = 'sgmoe', level = process.env.SGMOE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, formatters: { log: (fields) => redact(fields) } }, pino.destination(2));
}

/** A logger that writes nothing: the default for library users who do not pass one. */
export const silentLogger: Logger = pino({ level: 'silent' });
