import { randomUUID, type KeyObject } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { SgmoeError } from '../errors';
import { COMMANDS, isCommandName } from '../protocol/command';
import { replyPayloadSchema, type ReplyPayload } from '../protocol/payloads';
import { DEFAULT_TOPIC_PREFIX, topicsFor } from '../protocol/topics';
import { bounded } from '../transport/bounded';
import { commandExpiry, signCommand } from './command-signature';
import { publishCommand } from './outgoing-command';

/** How long the reply subscription's removal may take once the command ended (the broker may be gone by then). */
const UNSUBSCRIBE_MS = 2_000;

export interface RemoteCommandOptions {
  /** A connected mqtt.js client. */
  client: MqttClient;
  site: string;
  device: string;
  topicPrefix?: string;
  command: string;
  args?: unknown;
  /** Signs the envelope; required for every command that is not open (the device refuses it otherwise). */
  key?: KeyObject;
  correlationId?: string;
  timeoutMs: number;
  /** The device refuses a command that arrives after its signed deadline (`DeviceEntry.checksExpiry`): sign one. */
  checksExpiry?: boolean;
  /** Each reply as it arrives (an update's progress messages, then the final one). */
  onReply?: (reply: ReplyPayload) => void;
}


/**
 * The operator's side of one command to one device: signed when a key is given, published on `cmd/{name}`,
 * and answered by the device's final reply on `cmd/{name}/reply` (checked against the reply schema). Once it gives
 * up, nothing of the command is left to go out later: not sent if not sent yet, withdrawn from mqtt.js if queued, and
 * (`checksExpiry`) refused by the device past its signed deadline if already on its way.
 */
export async function sendCommand(options: RemoteCommandOptions): Promise<ReplyPayload> {
  const { client, site, device, command } = options;
  if (isCommandName(command) && !COMMANDS[command].open && !options.key) {
    throw new SgmoeError('E_CMD_UNAUTHORISED', `${command} changes the device: expected an operator key to sign it (--key), found none`);
  }
  const topics = topicsFor({ topicPrefix: options.topicPrefix ?? DEFAULT_TOPIC_PREFIX, site, device });
  const id = options.correlationId ?? randomUUID();
  const replyTopic = topics.reply(command);
  const expires = options.key && options.checksExpiry ? commandExpiry(Date.now(), options.timeoutMs) : undefined;
  let sent = false;
  // What became of the command, as far as this side knows when it gives up.
  const fate = () =>
    !sent ? '; not sent: the broker had not confirmed the reply subscription' : expires ? `; should it still reach ${device}, it refuses it past ${expires.toISOString()}` : '';
  let onMessage: (topic: string, payload: Buffer) => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const answered = new Promise<ReplyPayload>((resolve, reject) => {
    const within = `${(options.timeoutMs / 1000).toFixed(1)} s`;
    timer = setTimeout(() => reject(new SgmoeError('E_CMD_TIMEOUT', `no final reply from ${device} to ${command} (id ${id}) within ${within}${fate()}`)), options.timeoutMs);
    onMessage = (topic, payload) => {
      if (topic !== replyTopic) return;
      let json: unknown;
      try {
        json = JSON.parse(payload.toString('utf8'));
      } catch {
        return;
      }
      const reply = replyPayloadSchema.safeParse(json);
      if (!reply.success || reply.data.id !== id) return;
      options.onReply?.(reply.data);
      // Progress messages (an update's steps) come first; every request gets exactly one final reply.
      if (!(reply.data.ok && reply.data.progress)) resolve(reply.data);
    };
  });
  void answered.catch(() => undefined); // awaited below; a timeout during the subscribe must not go unhandled
  client.on('message', onMessage);
  let over = false;
  let withdraw = (): void => undefined;
  const exchange = async (): Promise<ReplyPayload> => {
    await client.subscribeAsync(replyTopic, { qos: 1 });
    // Given up while the subscription waited for the broker: sent now, it would come after the operator was told it failed.
    if (over) return answered;
    const body = options.key
      ? { id, envelope: signCommand({ command, site, device, id, args: options.args, expires }, options.key) }
      : { id, ...(options.args === undefined ? {} : { args: options.args }) };
    const outgoing = publishCommand(client, topics.command(command), JSON.stringify(body));
    sent = true;
    withdraw = outgoing.withdraw;
    await outgoing.acked;
    return answered;
  };
  try {
    // The timeout also ends a subscribe or publish that waits for a broker gone away.
    return await Promise.race([exchange(), answered]);
  } finally {
    over = true;
    withdraw();
    clearTimeout(timer);
    client.removeListener('message', onMessage);
    await bounded(client, client.unsubscribeAsync(replyTopic), UNSUBSCRIBE_MS, 'unsubscribing').catch(() => undefined);
  }
}
