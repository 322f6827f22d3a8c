import { z } from 'zod';
import { isoTime } from './payloads';
import { base64Schema, keyIdSchema } from './signature';
import { updateRequestSchema } from './update';

export const COMMAND_FORMAT = 'sgmoe-command/1';

const correlationId = z.string().min(1).max(256);

/**
 * Fields a signed command may carry beyond the first release's, which this SDK's devices check. Each device lists them
 * in its status (`envelopeFields`): an older device refuses a payload with a field it does not know, so the operator
 * signs one only for devices that list it.
 */
export const ENVELOPE_FIELDS = ['expires'] as const;

/**
 * What an operator signs: one command for one device (site and device as in its topics), at one moment (`ts`),
 * once (`nonce`), to arrive by `expires` (when given). The device refuses it anywhere else, outside its freshness
 * window, after its deadline, or a second time.
 */
export const signedCommandSchema = z
  .object({
    format: z.literal(COMMAND_FORMAT),
    command: z.string().min(1),
    site: z.string().min(1),
    device: z.string().min(1),
    /** The request's correlation id: the reply carries it. */
    id: correlationId,
    ts: isoTime,
    nonce: z.string().regex(/^[0-9a-f]{32}$/, '16 random bytes in hex'),
    /** The latest arrival the operator still waits for: one later is refused (E_CMD_EXPIRED), as the operator gave up on it. */
    expires: isoTime.optional(),
    args: z.unknown().optional(),
  })
  .strict();
export type SignedCommand = z.infer<typeof signedCommandSchema>;

/**
 * The signed command on the wire: `payload` is the exact JSON text that was signed (so nobody has to agree on
 * a canonical JSON form), `signature` is ed25519 over `sgmoe-command/1\n` + payload, by the key `keyId`.
 */
export const commandEnvelopeSchema = z
  .object({
    keyId: keyIdSchema,
    algorithm: z.literal('ed25519'),
    payload: z.string().min(2),
    signature: base64Schema,
  })
  .strict();
export type CommandEnvelope = z.infer<typeof commandEnvelopeSchema>;

/** Every message on `cmd/{name}`: the correlation id, and the args either in the clear or inside an envelope. */
export const commandRequestSchema = z
  .object({ id: correlationId, args: z.unknown().optional(), envelope: commandEnvelopeSchema.optional() })
  .strict()
  .refine((r) => r.envelope === undefined || r.args === undefined, { message: 'args travel inside the envelope when there is one', path: ['args'] });
export type CommandRequest = z.infer<typeof commandRequestSchema>;

const noArgs = z.object({}).strict().default({});

/** `set-threshold`: the engine's early-exit threshold (a hair above 1 = never exit early, as in the manifest). */
export const setThresholdArgsSchema = z.object({ threshold: z.number().min(0).max(1.000001) }).strict();

/** `set-false-alarm-rate` (task anomaly): the share of good frames flagged; the threshold follows the package's quantiles. */
export const setFalseAlarmRateArgsSchema = z.object({ rate: z.number().gt(0).lt(1) }).strict();

/**
 * Every command the device answers, with its args. Only the `open` ones (they read, they change nothing) run
 * without a signed envelope; any command added here without `open` needs one.
 */
export const COMMANDS = {
  ping: { args: noArgs, open: true },
  'get-config': { args: noArgs, open: true },
  'set-threshold': { args: setThresholdArgsSchema, open: false },
  'set-false-alarm-rate': { args: setFalseAlarmRateArgsSchema, open: false },
  update: { args: updateRequestSchema, open: false },
  rollback: { args: noArgs, open: false },
} as const;
export type CommandName = keyof typeof COMMANDS;
export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

export function isCommandName(name: string): name is CommandName {
  return Object.hasOwn(COMMANDS, name);
}
