import type { Command } from 'commander';
import { SgmoeError, errorMessage } from '../../errors';
import { closeOperator, connectOperator } from '../../fleet/broker';
import { checkTargets, IGNORE_OFFLINE_STATUS_FLAG } from '../../fleet/inventory';
import { readPrivateKey } from '../../fleet/keys';
import { sendCommand } from '../../fleet/remote-command';
import { COMMAND_NAMES } from '../../protocol/command';
import { DEFAULT_TOPIC_PREFIX } from '../../protocol/topics';
import { seconds } from '../options';

const print = (line: string): void => void process.stdout.write(line + '\n');

export interface RemoteFlags {
  broker: string;
  site: string;
  device: string;
  key?: string;
  topicPrefix: string;
  timeout: number;
  id?: string;
  ignoreOfflineStatus?: boolean;
}

/**
 * The flags every remote command shares: where the device is, and the operator key that signs. `required`:
 * commander insists on --broker, --site and --device (otherwise runRemoteCommand does, for commands that also
 * work locally).
 */
export function remoteOptions(command: Command, required = true): Command {
  const add = (flags: string, description: string): Command => (required ? command.requiredOption(flags, description) : command.option(flags, description));
  add('--broker <url>', 'MQTT broker, e.g. mqtt://broker:1883');
  add('--site <site>', 'site of the device');
  add('--device <id>', 'the device');
  return command
    .option('--key <file>', 'operator ed25519 private key: signs the command envelope (needed for every command that changes the device)')
    .option('--topic-prefix <prefix>', 'device topic prefix', DEFAULT_TOPIC_PREFIX)
    .option('--timeout <seconds>', 'how long the device has to answer', seconds, 60)
    .option('--id <correlationId>', 'correlation id of the command (default: a random UUID)')
    .option(...IGNORE_OFFLINE_STATUS);
}

/** The operator's override of the offline check (`checkTargets`), alike on every command sent to devices. */
export const IGNORE_OFFLINE_STATUS = [
  IGNORE_OFFLINE_STATUS_FLAG,
  "send even when a device's retained status says offline (a stale last will, published after its new online status), and wait for it as usual",
] as const;

/** Sends one (signed) command, prints each reply as a JSON line; exit 0 when the device did it, 2 when it refused or failed. */
export async function runRemoteCommand(flags: Partial<RemoteFlags>, command: string, args: unknown): Promise<void> {
  const { broker, site, device } = flags;
  if (!broker || !site || !device) throw new SgmoeError('E_USAGE', `${command} over MQTT: expected --broker, --site and --device`);
  const key = flags.key ? await readPrivateKey(flags.key) : undefined;
  const client = await connectOperator(broker, `sgmoe-cmd-${process.pid}`);
  try {
    const { devices } = await checkTargets(client, { site, topicPrefix: flags.topicPrefix ?? DEFAULT_TOPIC_PREFIX }, [device], { ignoreOfflineStatus: flags.ignoreOfflineStatus });
    const reply = await sendCommand({
      client,
      site,
      device,
      topicPrefix: flags.topicPrefix,
      command,
      args,
      key,
      correlationId: flags.id,
      timeoutMs: (flags.timeout ?? 60) * 1000,
      checksExpiry: devices.find((d) => d.device === device)?.checksExpiry,
      onReply: (r) => print(JSON.stringify(r)),
    });
    process.exitCode = reply.ok ? 0 : 2;
  } finally {
    await closeOperator(client);
  }
}

export function register(program: Command): void {
  remoteOptions(
    program
      .command('cmd')
      .argument('<name>', `the command: ${COMMAND_NAMES.join(', ')}`)
      .option('--args <json>', 'the command\'s args as JSON, e.g. \'{"threshold":0.8}\'')
      .description('send one command to a device (signed with --key) and print its replies; exit 2 when the device refuses it'),
  ).action(async (name: string, opts: RemoteFlags & { args?: string }) => {
    let args: unknown;
    try {
      args = opts.args === undefined ? undefined : JSON.parse(opts.args);
    } catch (err) {
      throw new SgmoeError('E_USAGE', `--args: expected JSON, found ${JSON.stringify(opts.args)} (${errorMessage(err)})`);
    }
    await runRemoteCommand(opts, name, args);
  });
}
