import { fstatSync, writeSync } from 'node:fs';
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
  if (!human) return pino({ name, level, formatters }, stderrIsJournal() ? journalLines : pino.destination(2));
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

/** Journald's priority of each pino level: `journalctl -p err` then finds the errors among the JSON lines. */
const PRIORITY: Record<string, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** JSON lines on stderr, each led by its priority as sd-daemon(3) reads it (`<3>{"level":50,...}`); pino puts the level first. */
const journalLines = {
  write(line: string): void {
    writeSync(2, `<${PRIORITY[/^\{"level":(\d+)/.exec(line)?.[1] ?? ''] ?? 6}>${line}`);
  },
};

/** Whether stderr is the journal's stream: systemd sets JOURNAL_STREAM to its device:inode (as a pipe to a file, stderr is not). */
function stderrIsJournal(): boolean {
  const [dev, ino] = (process.env.JOURNAL_STREAM ?? '').split(':');
  if (!dev || !ino) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

/** A logger that writes nothing: the default for library users who do not pass one. */
export const silentLogger: Logger = pino({ level: 'silent' });
