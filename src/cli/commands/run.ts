import { Command } from 'commander';
import { errorCode, errorMessage, SgmoeError } from '../../errors';
import { endsWithOnce } from '../../ingest';
import { createLogger } from '../../log';
import { redactText } from '../../redact';
import { parseNodeConfig, readConfigFile, type NodeConfigInput } from '../../node/config';
import { createEdgeNode } from '../../node/create';
import { startDashboard } from '../../node/dashboard';
import { BUNDLED_MODEL, demoConfig, sampleCamera } from '../../node/demo';
import type { NodeSource } from '../../node/edge-node';
import { finalSummary, liveLine } from '../../node/summary';
import { onNpmParentGone } from '../npm-parent';
import { number, port } from '../options';

interface RunOptions {
  config?: string;
  model?: string;
  device?: string;
  source: string[];
  mqtt?: string;
  embeddedBroker?: true | string;
  audit?: string;
  dashboard?: number;
  threshold?: number;
  falseAlarmRate?: number;
  once?: boolean;
  demo?: boolean;
  fps: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Each stops the node gracefully; a second one exits at once. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Config file first, then the demo's defaults if asked, then flags: the last word wins. */
async function buildConfig(opts: RunOptions): Promise<NodeConfigInput> {
  const base: Partial<NodeConfigInput> = opts.config ? await readConfigFile(opts.config) : opts.demo ? demoConfig() : {};
  const config: Record<string, unknown> = { ...base };
  if (opts.model) config.model = opts.model;
  if (opts.device) config.device = opts.device;
  if (opts.source.length > 0) config.sources = opts.source.map((uri) => ({ uri }));
  if (opts.mqtt) config.mqtt = { ...(base.mqtt ?? {}), url: opts.mqtt, embeddedBroker: undefined };
  if (opts.embeddedBroker !== undefined) {
    config.mqtt = { ...(base.mqtt ?? {}), embeddedBroker: { port: opts.embeddedBroker === true ? 1883 : port(opts.embeddedBroker) } };
  }
  if (opts.audit) config.audit = { ...(base.audit ?? {}), file: opts.audit };
  if (opts.dashboard !== undefined) config.dashboard = { port: opts.dashboard };
  if (opts.threshold !== undefined) config.routing = { ...(config.routing ?? {}), threshold: opts.threshold };
  if (opts.falseAlarmRate !== undefined) config.routing = { ...(config.routing ?? {}), falseAlarmRate: opts.falseAlarmRate };
  if (opts.once) config.once = true;
  config.model ??= BUNDLED_MODEL;
  return config as NodeConfigInput;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run the edge node: sources -> preprocessing -> engine -> audit log and MQTT')
    .option('--config <file>', 'node config (JSON or YAML); flags override it')
    .option('--model <dir>', 'model package directory (default: the bundled fashion-sgmoe)')
    .option('--device <profile>', 'device profile name or file, or "auto"')
    .option('--source <uri>', 'frame source: dir:PATH, http://..., mjpeg+http://..., mqtt:TOPIC, rtsp://..., v4l2:/dev/videoN, video:PATH (repeatable)', collect, [])
    .option('--mqtt <url>', 'MQTT broker URL (mqtt://, mqtts://, ws://, wss://)')
    .option('--embedded-broker [port]', 'start an MQTT broker in-process on 127.0.0.1 (default port 1883, 0 = any free port)')
    .option('--audit <file>', 'SQLite audit log file')
    .option('--dashboard <port>', 'serve the dashboard on 127.0.0.1:PORT (0 = any free port, its URL printed; none without this flag or a dashboard section in the config)', port)
    .option('--threshold <t>', 'early-exit threshold (anomaly packages: base scores below it skip the expert)', number)
    .option('--false-alarm-rate <r>', 'anomaly packages: the share of good frames flagged (sets the anomaly threshold)', number)
    .option('--once', 'handle what the sources hold now (files already in a folder, every frame of a video:) and exit with a summary; other sources (cameras, streams, mqtt:) have no end')
    .option('--demo', 'the bundled demo: sample frames as a camera, in-process broker, audit log in ./data/')
    .option('--fps <n>', 'demo camera frame rate (0 = as fast as the node takes them)', number, 25)
    .action(async (opts: RunOptions) => {
      const logger = createLogger('sgmoe', process.env.SGMOE_LOG_LEVEL ?? (process.stderr.isTTY ? 'warn' : 'info'));
      const config = parseNodeConfig(await buildConfig(opts), opts.config ?? 'flags');
      const camera = opts.demo ? await sampleCamera(config.model, opts.fps) : undefined;
      const extraSources: NodeSource[] = camera ? [camera.source] : [];
      if (config.sources.length === 0 && extraSources.length === 0) {
        throw new SgmoeError('E_CONFIG_INVALID', 'no frame source: give --source URI, a config with sources, or --demo');
      }
      const { node, broker, profile, agent } = await createEdgeNode(config, { logger, extraSources });
      if (opts.threshold !== undefined && node.engine.task.name === 'anomaly') {
        process.stderr.write(`note: --threshold ${opts.threshold} is the early exit (base scores below it skip the expert); the anomaly threshold follows --false-alarm-rate\n`);
      }
      // The dashboard is for people watching: when its port is taken, the node still does its job.
      const dashboard = config.dashboard
        ? await startDashboard(node, { ...config.dashboard, token: config.dashboard.token ?? (process.env.SGMOE_DASHBOARD_TOKEN || undefined), auditFile: config.audit?.file, logger }).catch((err: unknown) => {
            node.dashboardFailed(err instanceof SgmoeError ? err : new SgmoeError('E_DASHBOARD_LISTEN', errorMessage(err), undefined, { cause: err }));
            return undefined;
          })
        : undefined;
      if (dashboard) process.stderr.write(`dashboard: ${dashboard.url}\n`);

      let correct = 0;
      let scored = 0;
      node.on('decision', (frame, d) => {
        const truth = camera?.labelOf(frame.id);
        if (truth !== undefined) {
          scored++;
          correct += Number(truth === d.labelIndex);
        }
        if (opts.demo) {
          process.stdout.write(
            `${frame.id.padEnd(24)} ${d.label.padEnd(12)} ${d.score.toFixed(3)}  ${d.earlyExit ? 'early exit' : `expert ${d.expert}`}${truth === undefined ? '' : truth === d.labelIndex ? '' : '  (wrong)'}\n`,
          );
        }
      });
      // For someone watching; under a service manager the node's warn log line says it once.
      if (opts.demo || process.stdout.isTTY) node.on('rejected', (frame, err) => process.stdout.write(`${frame.id}: rejected ${err.code}: ${err.message}\n`));

      const live = process.stdout.isTTY && !opts.demo ? setInterval(() => process.stdout.write(`\r${liveLine(node.snapshot())}\x1b[K`), 1000) : null;
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals | 'npm gone') => {
        signals++;
        if (signals > 1) {
          process.stderr.write(`\n${signal} again: exiting now\n`);
          process.exit(130);
        }
        const why = signal === 'npm gone' ? 'the npm process that started the node has gone (npm does not pass SIGTERM on)' : signal;
        process.stderr.write(`\n${why}: finishing the frames in flight (again to force)\n`);
        node.stop().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'stop failed'));
      };
      // SIGHUP too: a closed terminal or an SSH session that drops must not end the node without its summary.
      for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
      const unwatchNpm = onNpmParentGone(() => onSignal('npm gone'));

      process.stderr.write(
        `sgmoe node: ${node.engine.model.name} ${node.engine.model.version}, profile ${profile.name}` +
          `${broker ? `, embedded broker ${broker.url}` : ''}${config.audit ? `, audit ${config.audit.file}` : ''}\n`,
      );
      // --once ends a folder's or a video's frames; any other source keeps the node running, which must not look hung.
      const endless = config.once ? config.sources.filter((s) => !endsWithOnce(s.uri)) : [];
      for (const s of endless) process.stderr.write(`--once: source ${s.name ?? redactText(s.uri)} has no end (only dir: and video: sources do): the node runs until stopped (Ctrl-C)\n`);
      // The camera plays until it has played or the node stops it; a node that fails to start ends both.
      // A stop that failed (a source cut off for not stopping) still ends with the summary, then exit 1.
      let stopFailure: unknown;
      await Promise.all([node.run(), camera?.play(!config.once)]).finally(() => node.stop().catch((err: unknown) => (stopFailure = err)));
      await dashboard?.close();
      if (live) clearInterval(live);
      for (const signal of STOP_SIGNALS) process.removeListener(signal, onSignal);
      unwatchNpm();
      process.stdout.write(`\n${finalSummary(node.snapshot(), camera ? { correct, scored, testAccuracy: camera.testAccuracy } : undefined)}\n`);
      // Every source failed (a folder that is not there, a camera that refused): the node did not do its job, so a
      // supervisor (systemd Restart=on-failure) must not read the end as a clean stop.
      if (stopFailure !== undefined) {
        process.stderr.write(`stop: ${errorCode(stopFailure)}: ${errorMessage(stopFailure)}\n`);
        process.exitCode = 1;
      }
      const failed = node.failedSources;
      if (failed.length > 0 && failed.length === config.sources.length + extraSources.length) {
        for (const f of failed) process.stderr.write(`source ${f.source} failed: ${f.code}: ${f.message}\n`);
        process.exitCode = 1;
      }
      // An update cut short by the stop may still wait out its health-watch timer; its state is persisted and
      // undone at the next start, so the process ends here rather than up to a watch window later. A source cut off
      // at the stop may still hold handles (a hung decoder's pipes) that would keep it alive.
      if (agent || stopFailure !== undefined) process.exit(process.exitCode ?? 0);
    });
}
