import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { SgmoeError } from './errors';
import { redact } from './redact';

export type { Logger };

/** `auto`: short human lines when stderr is a terminal, JSON lines otherwise (a pipe, a file, journald). */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** pino's levels (trace ... fatal) and `silent`. */
const LOG_LEVELS = [...Object.keys(pino.levels.values), 'silent'];

let defaultFormat: LogFormat = 'auto';

/** Set once by the CLI from `--log-format`; loggers created afterwards use it. */
export function setLogFormat(format: LogFormat): void {
  defaultFormat = format;
}

/**
 * Logs to stderr, so stdout stays free for command output such as `sgmoe infer`'s one decision per line.
 * Level from SGMOE_LOG_LEVEL (default info). No URL's credentials reach a line.
 */
export function createLogger(name = 'sgmoe', level = process.env.SGMOE_LOG_LEVEL ?? 'info', format: LogFormat = defaultFormat): Logger {
  if (!LOG_LEVELS.includes(level)) throw new SgmoeError('E_USAGE', `SGMOE_LOG_LEVEL: expected one of ${LOG_LEVELS.join(', ')}, found "${level}"`);
  const formatters = { log: (fields: Record<string, unknown>) => redact(fields) };
  const human = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  if (!human) return pino({ name, level, formatters }, pino.destination(2));
  // In-process and synchronous (no worker thread): a line is out before the process exits.
  const stream = pretty({
    destination: 2,
    sync: true,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname,name,module',
    messageFormat: '{if module}{module}: {end}{msg}',
  });
  return pino({ name, level, formatters }, stream);
}

/** A logger that writes nothing: the default for library users who do not pass one. */
export const silentLogger: Logger = pino({ level: 'silent' });
