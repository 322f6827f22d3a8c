import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { BrokerLink, closeOperator, connectOperator, describeOutage, RECONNECT_MS } from '../../fleet/broker';
import { bounded } from '../../transport/bounded';
import { clearChunks, publishChunks } from '../../fleet/chunks';
import { checkTargets, type DeviceEntry } from '../../fleet/inventory';
import { generateSigningKey, readPrivateKey } from '../../fleet/keys';
import { packPackage, readTarManifest } from '../../fleet/pack';
import { publishUpdate } from '../../fleet/publish';
import type { UpdateRequestInput } from '../../protocol/update';
import { servePackages } from '../../fleet/serve';
import { readPackageSignature, signPackage, writeSignature } from '../../fleet/signature';
import { SgmoeError } from '../../errors';
import { explainDeadlines, formatOutcomes, formatPhase, formatProgress, formatRunning } from './rollout-view';
import { rollbackStopped } from '../../fleet/offline-rollback';
import { readConfigFile } from '../../node/config';
import { createLogger } from '../../log';
import { IGNORE_OFFLINE_STATUS, remoteOptions, runRemoteCommand, type RemoteFlags } from './cmd';
import { sha256File } from '../../model/integrity';
import { list, seconds } from '../options';

const print = (line: string): void => void process.stdout.write(line + '\n');
/** How often publish says which devices are still at which step. */
const TICK_MS = 10_000;
/** How long the retained chunks' removal may take at the end. */
const CLEAR_CHUNKS_MS = 30_000;

interface PublishFlags {
  broker: string;
  site: string;
  device: string[];
  canary?: string[];
  url?: string;
  chunks?: boolean;
  topicPrefix: string;
  force?: boolean;
  key: string;
  window: number;
  timeout: number;
  id?: string;
  ignoreOfflineStatus?: boolean;
}

/** Operator and device sub-commands of `sgmoe model` for fleet updates (keygen, pack, sign, serve, publish, rollback). */
export function registerFleetModelCommands(model: Command): void {
  model
    .command('keygen')
    .argument('<out>', 'path prefix: writes OUT.key (private, 0600) and OUT.pub (for the devices\' trusted keys)')
    .description('make an ed25519 signing key pair')
    .action(async (out: string) => {
      const key = await generateSigningKey(out);
      print(`key ${key.keyId}: ${key.privateKeyPath} (keep secret), ${key.publicKeyPath} (give to devices)`);
    });

  model
    .command('pack')
    .argument('<dir>', 'package directory (checked: manifest and every sha256)')
    .argument('<out>', 'the .tar to write')
    .description('pack a package into a deterministic tar (sorted entries, fixed mtime, no owners)')
    .action(async (dir: string, out: string) => {
      const packed = await packPackage(dir, out);
      const leftOut = packed.leftOut.length > 0 ? ` (${packed.leftOut.map((f) => `${f}/`).join(', ')} left out: not used on a device)` : '';
      print(`${packed.tar}: ${packed.name} ${packed.version}, ${packed.entries} entries, ${packed.bytes} bytes${leftOut}, sha256 ${packed.sha256}`);
    });

  model
    .command('sign')
    .argument('<pkg>', 'package tar')
    .requiredOption('--key <file>', 'ed25519 private key (from keygen)')
    .description('write PKG.sig: an ed25519 signature over the package tar\'s sha256')
    .action(async (pkg: string, opts: { key: string }) => {
      const signature = await signPackage(pkg, await readPrivateKey(opts.key));
      print(`${await writeSignature(pkg, signature)}: key ${signature.keyId}, sha256 ${signature.sha256}`);
    });

  model
    .command('serve')
    .argument('<dir>', 'folder of package tars and signatures')
    .option('--host <host>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('--port <port>', 'port to listen on', '8080')
    .description('serve packages over HTTP (with Range requests, so devices resume interrupted downloads)')
    .action(async (dir: string, opts: { host: string; port: string }) => {
      const server = await servePackages(dir, { host: opts.host, port: Number(opts.port), logger: createLogger('sgmoe-serve') });
      print(`serving ${resolve(dir)} at ${server.url} (Ctrl-C to stop)`);
      await new Promise<void>((done) => process.once('SIGINT', () => void server.close().then(done)));
    });

  model
    .command('publish')
    .argument('<pkg>', 'signed package tar (PKG.sig next to it)')
    .requiredOption('--broker <url>', 'MQTT broker, e.g. mqtt://broker:1883')
    .requiredOption('--site <site>', 'site of the devices')
    .requiredOption('--device <ids>', 'device(s) to update (repeat or comma-separate)', list)
    .requiredOption('--key <file>', 'operator ed25519 private key: signs each device\'s command envelope')
    .option('--canary <ids>', 'devices updated first; the rest only if they stay healthy (repeat or comma-separate)', list)
    .option('--url <url>', 'where devices download the tar (e.g. from `sgmoe model serve`)')
    .option('--chunks', 'send the tar in retained MQTT chunks instead (sites without HTTP)')
    .option('--topic-prefix <prefix>', 'device topic prefix', 'sgmoe/v1/{site}/{device}/')
    .option('--force', 'allow a version that is not newer (downgrade)')
    .option('--window <seconds>', 'how long canaries must stay healthy after their update, before the others get it', seconds, 300)
    .option('--timeout <seconds>', 'how long each device has to reach its health watch; the watch (from its status) comes on top', seconds, 900)
    .option('--id <correlationId>', 'correlation id of the command (default: a random UUID)')
    .option(...IGNORE_OFFLINE_STATUS)
    .description('send an update command to devices, canaries first, showing each step; exit 2 when any device did not finish it')
    .action(async (pkg: string, opts: PublishFlags) => {
      if (Boolean(opts.url) === Boolean(opts.chunks)) throw new SgmoeError('E_USAGE', 'expected exactly one of --url URL (e.g. from `sgmoe model serve`) or --chunks');
      if ((await stat(pkg).catch(() => null))?.isDirectory()) {
        throw new SgmoeError('E_USAGE', `${pkg}: expected a signed package tar, found a directory: pack and sign it first (\`sgmoe model pack ${pkg} OUT.tar\`, then \`sgmoe model sign OUT.tar --key KEY\`)`);
      }
      const [manifest, signature, sha256, key] = await Promise.all([readTarManifest(pkg), readPackageSignature(pkg), sha256File(pkg), readPrivateKey(opts.key)]);
      const client = await connectOperator(opts.broker, `sgmoe-publish-${process.pid}`);
      // The client reconnects by itself; the operator hears of it, and the retained status tells what happened meanwhile.
      const link = new BrokerLink(client, {
        lost: (o) => print(`broker ${opts.broker} lost at ${new Date(o.lost).toISOString()}: reconnecting every ${RECONNECT_MS / 1000} s; each device's deadline still runs`),
        back: (o) => print(`broker ${opts.broker} back after ${((o.back! - o.lost) / 1000).toFixed(1)} s: replies sent meanwhile are lost, each device's retained status tells how its update went`),
      });
      let ticker: NodeJS.Timeout | undefined;
      try {
        const targets = [...new Set([...(opts.canary ?? []), ...opts.device])];
        const inventory = await checkTargets(client, { site: opts.site, topicPrefix: opts.topicPrefix }, targets, { ignoreOfflineStatus: opts.ignoreOfflineStatus });
        const known = inventory.devices.filter((d) => targets.includes(d.device));
        checkCanaryWindow(known.filter((d) => opts.canary?.includes(d.device)), opts.window * 1000);
        const base = { sha256, signature, version: manifest.version, force: Boolean(opts.force) };
        const site = opts.topicPrefix.replaceAll('{site}', opts.site).split('{device}')[0];
        const request: UpdateRequestInput = opts.url
          ? { ...base, url: opts.url }
          : { ...base, chunks: await bounded(client, publishChunks(client, pkg, `${site}packages/${sha256}`), opts.timeout * 1000, 'publishing the package chunks') };
        print(`publishing ${manifest.name} ${manifest.version} (${(await stat(pkg)).size} bytes, ${basename(pkg)}); deadlines:`);
        for (const line of explainDeadlines(known, opts.timeout * 1000)) print(`  ${line}`);
        const running = new Map<string, { step: string | null; stepAt: number; sentAt: number }>();
        ticker = setInterval(() => {
          const now = Date.now();
          const rows = [...running].map(([device, r]) => ({ device, step: r.step, stepMs: now - r.stepAt, elapsedMs: now - r.sentAt }));
          if (rows.length > 0) print(formatRunning(rows));
        }, TICK_MS);
        const report = await publishUpdate({
          client,
          site: opts.site,
          topicPrefix: opts.topicPrefix,
          devices: opts.device,
          canary: opts.canary,
          request,
          key,
          correlationId: opts.id,
          replyTimeoutMs: opts.timeout * 1000,
          canaryWindowMs: opts.window * 1000,
          known,
          ignoreOfflineStatus: opts.ignoreOfflineStatus,
          onPhase: (phase) => {
            print(formatPhase(phase));
            const now = Date.now();
            if (phase.phase === 'canary' || phase.phase === 'rollout') for (const d of phase.devices) running.set(d, { step: null, stepAt: now, sentAt: now });
          },
          onProgress: (p) => {
            print(formatProgress(p));
            const now = Date.now();
            running.set(p.device, { step: p.step, stepAt: now, sentAt: now - p.elapsedMs });
          },
          onOutcome: (o) => running.delete(o.device),
          // Progress goes to stdout as lines for people; the JSON log keeps to warnings unless asked for more.
          logger: createLogger('sgmoe-publish', process.env.SGMOE_LOG_LEVEL ?? 'warn'),
        });
        print(formatOutcomes(report));
        const down = link.down;
        // Every device done: the rollout succeeded whatever the broker does now; only its retained chunks wait.
        if (down && report.ok) {
          process.stderr.write(`${describeOutage(down)} by the end of the rollout: every device is done${request.chunks ? `; the package chunks stay retained under ${request.chunks.topic}/ until removed` : ''}\n`);
        } else if (down) {
          const chunks = request.chunks ? `; the package chunks stay retained under ${request.chunks.topic}/` : '';
          throw new SgmoeError(
            'E_MQTT_LOST',
            `${describeOutage(down)} by the end of the rollout: the table tells what was known then (a device may have ended its update since)${chunks}; read \`sgmoe fleet status --broker ${opts.broker} --site ${opts.site}\` once the broker is back`,
          );
        }
        // Every device has answered or timed out: the retained chunks would otherwise sit on the broker for good.
        if (request.chunks && !down) await bounded(client, clearChunks(client, request.chunks), CLEAR_CHUNKS_MS, `removing the retained package chunks under ${request.chunks.topic}/`);
        process.exitCode = report.ok ? 0 : 2;
      } finally {
        clearInterval(ticker);
        link.stop();
        await closeOperator(client);
      }
    });

  remoteOptions(
    model
      .command('rollback')
      .option('--config <file>', 'on a device whose node is stopped: its node config (fleet.root and audit.file)')
      .option('--root <dir>', 'on a device whose node is stopped: its package store (the update agent\'s root)')
      .option('--audit <file>', 'with --root: the device\'s audit log, where the rollback is recorded')
      .description('back to the previous package: a running device over MQTT (signed with --key), or a stopped one with --config or --root'),
    false,
  )
    .action(async (opts: Partial<RemoteFlags> & { root?: string; audit?: string; config?: string }) => {
      const config = opts.config ? await readConfigFile(opts.config) : undefined;
      const root = opts.root ?? config?.fleet?.root;
      if (opts.config && !root) throw new SgmoeError('E_USAGE', `${opts.config} has no fleet section: expected fleet.root, or --root DIR`);
      if (!root && !(opts.broker && opts.site && opts.device)) {
        throw new SgmoeError(
          'E_USAGE',
          'rollback: expected --broker, --site and --device (a running device, over MQTT, signed with --key), or --config FILE or --root DIR (on a device whose node is stopped)',
        );
      }
      if (!root) return runRemoteCommand(opts, 'rollback', undefined);
      const audit = opts.audit ?? config?.audit?.file;
      const done = await rollbackStopped({ root, audit, correlationId: opts.id });
      print(`rolled back from ${done.from} to ${done.to} (id ${done.correlationId}); the node runs ${done.to} when it starts`);
      if (!done.audited) process.stderr.write(`not recorded in an audit log: give --audit FILE (or --config) to keep the rollback in the device's trail\n`);
    });
}

/** A canary window shorter than a canary's health interval would see no health report and always fail it. */
function checkCanaryWindow(canaries: DeviceEntry[], windowMs: number): void {
  const slow = canaries.filter((d) => d.healthIntervalMs !== null && d.healthIntervalMs >= windowMs);
  if (slow.length === 0) return;
  const longest = Math.max(...slow.map((d) => d.healthIntervalMs!));
  throw new SgmoeError(
    'E_USAGE',
    `--window ${windowMs / 1000} s is not longer than the health interval of ${slow.map((d) => `${d.device} (${d.healthIntervalMs! / 1000} s)`).join(', ')}: ` +
      `the canary check would see no health report; use --window ${Math.ceil((2 * longest) / 1000)} or more`,
  );
}
