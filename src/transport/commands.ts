import type { z } from 'zod';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { validate } from '../validate';
import { silentLogger, type Logger } from '../log';
import { COMMANDS, COMMAND_NAMES, commandRequestSchema, isCommandName, type CommandName, type CommandRequest } from '../protocol/command';
import { REPLY_SCHEMA, type ReplyPayload } from '../protocol/payloads';
import type { UpdateRequest } from '../protocol/update';
import type { CommandAuthoriser } from './authorise';

/**
 * Who asked for a command: its request id, and the operator key whose envelope authorised it (null: an open command
 * sent without one). Whatever the command changes is audited under both.
 */
export interface CommandOrigin {
  id: string;
  keyId: string | null;
}

/** The node's side of each command, injected by whoever wires the transport. */
export interface CommandHandlers {
  ping(): unknown;
  getConfig(): unknown;
  /** The engine's early-exit threshold, changed at run time. */
  setThreshold(threshold: number, origin: CommandOrigin): unknown;
  /** The anomaly threshold, from a target false-alarm rate and the package's calibration quantiles. */
  setFalseAlarmRate?(rate: number, origin: CommandOrigin): unknown;
  /** The fleet agent; absent (no `fleet` config): `update` and `rollback` get an E_CMD_UNSUPPORTED reply. */
  update?(request: UpdateRequest, correlationId: string, origin: CommandOrigin): unknown;
  /** Back to the previous package, on a running device; the request's id goes into its audit event. */
  rollback?(correlationId: string, origin: CommandOrigin): unknown;
}

function unsupported(name: string): never {
  throw new SgmoeError('E_CMD_UNSUPPORTED', `${name} is not supported by this node: expected a fleet agent to hand it to, found none configured`);
}

/** How each command's args (validated by its schema in src/protocol/command.ts) reach its handler. */
const RUN: { [K in CommandName]: (h: CommandHandlers, args: z.output<(typeof COMMANDS)[K]['args']>, origin: CommandOrigin) => unknown } = {
  ping: (h) => h.ping(),
  'get-config': (h) => h.getConfig(),
  'set-threshold': (h, a, o) => h.setThreshold(a.threshold, o),
  'set-false-alarm-rate': (h, a, o) => {
    if (!h.setFalseAlarmRate) throw new SgmoeError('E_CMD_UNSUPPORTED', 'set-false-alarm-rate is not supported by this node: expected an anomaly package');
    return h.setFalseAlarmRate(a.rate, o);
  },
  update: (h, a, o) => (h.update ? h.update(a, o.id, o) : unsupported('update')),
  rollback: (h, _a, o) => (h.rollback ? h.rollback(o.id, o) : unsupported('rollback')),
};

/** A command that was refused because nobody authorised it (for the audit log). */
export interface RefusedCommand {
  command: string;
  id: string | null;
  error: { code: string; message: string };
}

export interface CommandDispatcherOptions {
  handlers: CommandHandlers;
  maxPayloadBytes: number;
  /** Checks the envelope of every command that is not open; absent = such commands are all refused. */
  authoriser?: CommandAuthoriser;
  onRefused?: (refused: RefusedCommand) => void;
  logger?: Logger;
}

const AUTH_CODES = new Set(['E_CMD_UNAUTHORISED', 'E_CMD_STALE', 'E_CMD_EXPIRED', 'E_CMD_REPLAYED']);

/**
 * Turns one command message into one reply. Nothing a sender puts in a message can make it throw:
 * oversized, malformed, unknown or ill-typed requests get an `E_CMD_*` error reply and a log line.
 */
export class CommandDispatcher {
  private readonly log: Logger;

  constructor(private readonly options: CommandDispatcherOptions) {
    this.log = (options.logger ?? silentLogger).child({ module: 'commands' });
  }

  async handle(name: string, payload: Buffer): Promise<ReplyPayload> {
    let id: string | null = null;
    try {
      const raw = this.parse(payload);
      id = typeof raw.id === 'string' ? raw.id : null;
      const request = validate(commandRequestSchema, raw, { code: 'E_CMD_INVALID', where: `the request to ${name}` });
      id = request.id;
      if (!isCommandName(name)) {
        throw new SgmoeError('E_CMD_UNKNOWN', `unknown command "${name}": expected one of ${COMMAND_NAMES.join(', ')}`);
      }
      const command = COMMANDS[name];
      // An envelope is checked whenever there is one; a command that changes the device needs one. Its key id
      // goes on to the handler, so the change is audited with who authorised it.
      const authorised = command.open && !request.envelope ? null : await this.authorise(name, request.id, request.envelope);
      const parsedArgs = validate(command.args as z.ZodType, authorised ? authorised.args : request.args, { code: 'E_CMD_INVALID', where: `the args of ${name}` });
      const origin: CommandOrigin = { id: request.id, keyId: authorised?.keyId ?? null };
      const data = await (RUN[name] as (h: CommandHandlers, a: unknown, o: CommandOrigin) => unknown)(this.options.handlers, parsedArgs, origin);
      this.log.info({ command: name, id }, 'command done');
      return { schema: REPLY_SCHEMA, id, command: name, ts: new Date().toISOString(), ok: true, data: data ?? null };
    } catch (err) {
      const error = { code: err instanceof SgmoeError ? errorCode(err) : 'E_CMD_FAILED', message: errorMessage(err) };
      if (AUTH_CODES.has(error.code)) this.refused({ command: name, id, error });
      else this.log.warn({ command: name, id, error }, 'command failed');
      return { schema: REPLY_SCHEMA, id, command: name, ts: new Date().toISOString(), ok: false, error };
    }
  }

  private authorise(name: string, id: string, envelope: CommandRequest['envelope']): ReturnType<CommandAuthoriser['authorise']> {
    const { authoriser } = this.options;
    if (!authoriser) {
      throw new SgmoeError('E_CMD_UNAUTHORISED', `${name} changes the device, and this node checks no operator keys: expected a transport configured with trusted keys`);
    }
    return authoriser.authorise(name, id, envelope);
  }

  private refused(refused: RefusedCommand): void {
    this.log.warn({ ...refused }, 'command refused: not authorised, or not in time');
    try {
      this.options.onRefused?.(refused);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'the refused-command listener failed');
    }
  }

  /** The raw request: size first (never parse what is too big), then JSON, then "an object". */
  private parse(payload: Buffer): Record<string, unknown> {
    if (payload.length > this.options.maxPayloadBytes) {
      throw new SgmoeError(
        'E_CMD_TOO_LARGE',
        `command payload too large: expected at most ${this.options.maxPayloadBytes} bytes, found ${payload.length}`,
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      throw new SgmoeError('E_CMD_JSON', `command payload is not JSON: expected {"id": "...", "args": {...}}, found ${preview(payload)} (${errorMessage(err)})`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new SgmoeError('E_CMD_INVALID', `command payload must be a JSON object: expected {"id": "...", "args": {...}}, found ${preview(payload)}`);
    }
    return json as Record<string, unknown>;
  }
}

function preview(payload: Buffer): string {
  const text = payload.toString('utf8', 0, Math.min(payload.length, 80));
  return JSON.stringify(payload.length > 80 ? `${text}…` : text);
}
