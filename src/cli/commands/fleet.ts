import type { Command } from 'commander';
import { BrokerLink, closeOperator, connectOperator, RECONNECT_MS } from '../../fleet/broker';
import { readInventory, type Inventory } from '../../fleet/inventory';
import { DEFAULT_TOPIC_PREFIX } from '../../protocol';

interface StatusFlags {
  broker?: string;
  site: string;
  topicPrefix: string;
  json?: boolean;
  watch?: boolean;
}

/** `sgmoe fleet status`: every device of a site, from the broker's retained status and health topics. */
export function register(program: Command): void {
  const fleet = program.command('fleet').description('the devices of a site, as the broker knows them');
  fleet
    .command('status')
    .description('each device: online or offline, last seen, model version, update step, frames/s, active alarms')
    .option('--broker <url>', 'MQTT broker, e.g. mqtt://broker:1883')
    .requiredOption('--site <site>', 'the site whose devices to list')
    .option('--topic-prefix <prefix>', 'device topic prefix', DEFAULT_TOPIC_PREFIX)
    .option('--json', 'one JSON object instead of a table')
    .option('--watch', 'keep following the site and print the table again on every change, through broker restarts (Ctrl-C to stop)')
    .action(async (flags: StatusFlags) => {
      const client = await connectOperator(flags.broker, `sgmoe-fleet-${process.pid}`);
      const print = (inventory: Inventory) => process.stdout.write(flags.json ? `${JSON.stringify(inventory)}\n` : formatInventory(inventory));
      // Lines for people: beside a table on stdout, on stderr beside JSON lines.
      const say = (line: string) => (flags.json ? process.stderr : process.stdout).write(`${line}\n`);
      let link: BrokerLink | null = null;
      try {
        const { inventory, stop } = await readInventory(client, { site: flags.site, topicPrefix: flags.topicPrefix, onChange: flags.watch ? print : undefined });
        print(inventory);
        if (!flags.watch) return await stop();
        // The client reconnects (its retry timer keeps the watch alive) and resubscribes: the retained status comes again.
        link = new BrokerLink(client, {
          lost: (o) => say(`broker ${flags.broker} lost at ${new Date(o.lost).toISOString()}: reconnecting every ${RECONNECT_MS / 1000} s; the table above may be stale`),
          back: (o) => say(`broker ${flags.broker} back after ${((o.back! - o.lost) / 1000).toFixed(1)} s: reading the site's retained status again`),
        });
        await new Promise<void>((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
        await stop().catch(() => undefined);
      } finally {
        link?.stop();
        await closeOperator(client);
      }
    });
}

export function formatInventory(inventory: Inventory): string {
  if (inventory.devices.length === 0) return `site ${inventory.site}: no device has ever reported on this broker\n`;
  const rows = inventory.devices.map((d) => [
    d.device,
    d.state === 'offline' && d.reason ? `offline (${d.reason})` : d.state,
    d.lastSeen ?? '-',
    d.version === null ? '-' : `${d.model ?? ''} ${d.version}`.trim(),
    d.sdk ?? '-',
    d.update ?? '-',
    d.framesPerSecond === null ? '-' : d.framesPerSecond.toFixed(1),
    d.alarms.join(', ') || '-',
  ]);
  const header = ['device', 'state', 'last seen', 'model', 'sdk', 'update', 'frames/s', 'alarms'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const extra = inventory.malformed > 0 ? `(${inventory.malformed} message(s) on the site's topics did not match the protocol)\n` : '';
  return `${[line(header), ...rows.map(line)].join('\n')}\n${extra}`;
}
