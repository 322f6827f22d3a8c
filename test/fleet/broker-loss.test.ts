import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { signPackage, writeSignature } from '../../src/fleet/signature';
import { startSgmoe } from '../helpers/cli';
import { Mosquitto, waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { ScriptedDevice } from './scripted-device';
import { variant } from './support';

/**
 * The operator's commands when the broker goes away under them (a real mosquitto, stopped and started again on
 * the same port with its retained messages): they say so, follow the broker back, and never hang.
 */
const SITE = 'plant-1';
const tmp = tempDir('sgmoe-broker-loss-');
let broker: Mosquitto;
let brokerUp = false;
let tar: string;
const keyPath = join(tmp.path, 'operator.key');

/** `sgmoe` as a child process, its output kept as it comes. */
class Run {
  stdout = '';
  stderr = '';
  status: number | null | undefined = undefined;
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: string[]) {
    const child = (this.child = startSgmoe(args));
    runs.push(this);
    child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.exited = new Promise((resolve) => child.on('close', (status) => resolve((this.status = status))));
  }

  /** Until stdout matches; fails at once, with the output, if the command ended first. */
  async sees(pattern: RegExp, timeoutMs = 30_000): Promise<void> {
    await waitUntil(() => pattern.test(this.stdout) || this.status !== undefined, timeoutMs, `${pattern} on stdout`);
    if (!pattern.test(this.stdout)) throw new Error(`the command ended (exit ${this.status}) without printing ${pattern}:\n${this.stdout}\n${this.stderr}`);
  }

  /** Its exit code, within `timeoutMs` (a failure timeout: a command that hangs fails the test). */
  async ends(timeoutMs: number): Promise<number | null> {
    await waitUntil(() => this.status !== undefined, timeoutMs, `the command to end; its output so far:\n${this.stdout}\n${this.stderr}`);
    return this.status!;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.status === undefined) this.child.kill(signal);
  }
}

const runs: Run[] = [];
// A command that hung does not outlive its test.
afterEach(() => {
  for (const run of runs.splice(0)) run.kill('SIGKILL');
});

async function stopBroker(): Promise<void> {
  brokerUp = false;
  await broker.stop();
}

async function startBroker(): Promise<void> {
  if (brokerUp) return;
  await broker.start();
  brokerUp = true;
}

const publish = (device: string, ...flags: string[]) =>
  new Run(['model', 'publish', tar, '--broker', broker.url, '--site', SITE, '--device', device, '--key', keyPath, '--url', 'http://127.0.0.1:9/unused.tar', ...flags]);

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await startBroker();
  await generateSigningKey(join(tmp.path, 'operator'));
  const packed = await packPackage(variant(join(tmp.path, 'next'), (m) => (m.version = '1.1.0')), join(tmp.path, 'next.tar'));
  await writeSignature(packed.tar, await signPackage(packed.tar, await readPrivateKey(keyPath)));
  tar = packed.tar;
}, 60_000);

afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

const model = { name: 'fashion-sgmoe', version: '1.0.0' };

test('publish follows a broker restart mid-rollout: it says the broker was lost and is back, and takes the outcome from the retained status', async () => {
  const device = await ScriptedDevice.start(broker.url, SITE, 'cell-1', { model, fleet: { watchWindowMs: 1000 } }, async (correlationId, d) => {
    await d.progress(correlationId, 'requested', '1.1.0');
    await d.progress(correlationId, 'watching', '1.1.0', { watchMs: 1000 });
  });
  try {
    const run = publish('cell-1', '--timeout', '60', '--id', 'ROLL-1');
    await run.sees(/cell-1\s+watching/);
    await stopBroker();
    await run.sees(/broker mqtt:\S+ lost at \S+: reconnecting every \d+ s; each device's deadline still runs/);
    // The device ends its update while the broker is away: its final reply is lost, its status (sent again on
    // reconnect) tells the outcome.
    device.info = { model: { ...model, version: '1.1.0' }, fleet: { watchWindowMs: 1000 }, lastUpdate: { outcome: 'done', version: '1.1.0', correlationId: 'ROLL-1', ts: new Date().toISOString() } };
    await startBroker();
    expect(await run.ends(60_000)).toBe(0);
    expect(run.stdout).toMatch(/broker mqtt:\S+ back after \d+\.\d s/);
    expect(run.stdout).toMatch(/\ncell-1\s+done\s+1\.1\.0\s/);
  } finally {
    await startBroker();
    await device.close();
  }
}, 90_000);

test('publish whose broker is gone for good ends when the device deadline passes: the table, then E_MQTT_LOST, exit 1', async () => {
  const device = await ScriptedDevice.start(broker.url, SITE, 'cell-2', { model, fleet: { watchWindowMs: 1000 } }, async (correlationId, d) => {
    await d.progress(correlationId, 'requested', '1.1.0');
  });
  try {
    const run = publish('cell-2', '--timeout', '8', '--id', 'ROLL-2');
    await run.sees(/cell-2\s+requested/);
    await stopBroker();
    expect(await run.ends(60_000)).toBe(1);
    expect(run.stdout).toMatch(/broker mqtt:\S+ lost at \S+: reconnecting every \d+ s; each device's deadline still runs/);
    expect(run.stdout).toMatch(/\ncell-2\s+timeout\s+1\.0\.0\s+.*E_CMD_TIMEOUT\s+.*; the broker connection was lost at \S+( \(.*\))?, not back$/m);
    expect(run.stderr).toMatch(/E_MQTT_LOST: the broker connection was lost at \S+( \(.*\))?, not back by the end of the rollout/);
  } finally {
    await startBroker();
    await device.close();
  }
}, 90_000);

test('fleet status --watch says when the broker is lost, keeps reconnecting, and reads the site again once it is back', async () => {
  const device = await ScriptedDevice.start(broker.url, SITE, 'cell-3', { model });
  const run = new Run(['fleet', 'status', '--broker', broker.url, '--site', SITE, '--watch']);
  try {
    await run.sees(/\ncell-3\s+online/);
    await stopBroker();
    await run.sees(/broker mqtt:\S+ lost at \S+: reconnecting every \d+ s; the table above may be stale/);
    await startBroker();
    await run.sees(/broker mqtt:\S+ back after \d+\.\d s: reading the site's retained status again\n(.|\n)*\ncell-3\s+online/);
    run.kill('SIGINT');
    expect(await run.ends(30_000)).toBe(0);
  } finally {
    await startBroker();
    await device.close();
  }
}, 90_000);
