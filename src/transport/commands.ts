import { z } from 'zod';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { validate } from '../validate';
import { silentLogger, type Logger } from '../log';
import { updateRequestSchema, type UpdateRequest } from '../fleet/request';
import { REPLY_SCHEMA, type ReplyPayload } from './payloads';


/** The node's side of each command, injected by whoever wires the transport. */
export interface CommandHandlers {
  ping(): unknown;
  getConfig(): unknown;
  /** The engine's early-exit threshold, changed at run time. */
  setThreshold(threshold: number): unknown;
  /** The anomaly threshold, from a target false-alarm rate and the package's calibration quantiles. */
  setFalseAlarmRate?(rate: number): unknown;
  /** The fleet agent; absent (no `fleet` config): `update` and `rollback` get an E_CMD_UNSUPPORTED reply. */
  update?(request: UpdateRequest, correlationId: string): unknown;
  /** Back to the previous package, on a running device. */
  rollback?(): unknown;
}

const noArgs = z.object({}).strict().default({});

/** Each command's `args` schema and how it reaches its handler. */
const COMMANDS = {
  ping: { args: noArgs, run: (h: CommandHandlers) => h.ping() },
  'get-config': { args: noArgs, run: (h: CommandHandlers) => h.getConfig() },
  'set-threshold': {
    // Same range as the manifest's routing.earlyExit.threshold (a hair above 1 = never exit early).
    args: z.object({ threshold: z.number().min(0).max(1.000001) }).strict(),
    run: (h: CommandHandlers, a: { threshold: number }) => h.setThreshold(a.threshold),
  },
  'set-false-alarm-rate': {
    // The share of good frames flagged (task anomaly): the threshold moves along the package's good-score quantiles.
    args: z.object({ rate: z.number().gt(0).lt(1) }).strict(),
    run: (h: CommandHandlers, a: { rate: number }) => {
      if (!h.setFalseAlarmRate) throw new SgmoeError('E_CMD_UNSUPPORTED', 'set-false-alarm-rate is not supported by this node');
      return h.setFalseAlarmRate(a.rate);
    },
  },
  update: {
    args: updateRequestSchema,
    run: (h: CommandHandlers, a: UpdateRequest, id: string) => {
      if (!h.update) {
        throw new SgmoeError('E_CMD_UNSUPPORTED', 'update is not supported by this node: expected a fleet agent to hand it to, found none configured');
      }
      return h.update(a, id);
    },
  },
  rollback: {
    args: noArgs,
    run: (h: CommandHandlers) => {
      if (!h.rollback) {
        throw new SgmoeError('E_CMD_UNSUPPORTED', 'rollback is not supported by this node: expected a fleet agent to hand it to, found none configured');
      }
      return h.rollback();
    },
  },
} as const;
type CommandName = keyof typeof COMMANDS;
export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

/** Every request: a correlation id echoed in the reply, and the command's arguments. */
const requestSchema = z.object({ id: z.string().min(1).max(256), args: z.unknown().optional() }).strict();

export interface CommandDispatcherOptions {
  handlers: CommandHandlers;
  maxPayloadBytes: number;
  logger?: Logger;
}

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
      const request = this.parse(payload);
      id = typeof request.id === 'string' ? request.id : null;
      const { id: validId, args } = validate(requestSchema, request, { code: 'E_CMD_INVALID', where: `the request to ${name}` });
      id = validId;
      if (!(name in COMMANDS)) {
        throw new SgmoeError('E_CMD_UNKNOWN', `unknown command "${name}": expected one of ${COMMAND_NAMES.join(', ')}`);
      }
      const command = COMMANDS[name as CommandName];
      const parsedArgs = validate(command.args as z.ZodType, args, { code: 'E_CMD_INVALID', where: `the args of ${name}` });
      const data = await (command.run as (h: CommandHandlers, a: unknown, id: string) => unknown)(this.options.handlers, parsedArgs, validId);
      this.log.info({ command: name, id }, 'command done');
      return { schema: REPLY_SCHEMA, id, command: name, ts: new Date().toISOString(), ok: true, data: data ?? null };
    } catch (err) {
      const error = { code: err instanceof SgmoeError ? errorCode(err) : 'E_CMD_FAILED', message: errorMessage(err) };
      this.log.warn({ command: name, id, error }, 'command failed');
      return { schema: REPLY_SCHEMA, id, command: name, ts: new Date().toISOString(), ok: false, error };
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
