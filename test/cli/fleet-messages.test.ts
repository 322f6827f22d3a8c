import { join } from 'node:path';
import { formatRunning } from '../../src/cli/commands/rollout-view';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { signPackage, writeSignature } from '../../src/fleet/signature';
import { EmbeddedBroker } from '../../src/transport/broker';
import { sgmoeAsync } from '../helpers/cli';
import { BUNDLED, copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { ScriptedDevice } from '../fleet/scripted-device';

/** What the fleet commands tell an operator who gives them something they cannot act on. */
const tmp = tempDir('sgmoe-fleet-messages-');
const broker = new EmbeddedBroker();
const keyPath = join(tmp.path, 'operator.key');

beforeAll(async () => {
  await broker.start();
  await generateSigningKey(join(tmp.path, 'operator'));
});

afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

test('publish to a device whose status says offline is refused at once, naming it, and nothing is sent', async () => {
  const packed = await packPackage(copyPackage(join(tmp.path, 'pkg')), join(tmp.path, 'pkg.tar'));
  await writeSignature(packed.tar, await signPackage(packed.tar, await readPrivateKey(keyPath)));
  const online = await ScriptedDevice.start(broker.url, 'plant-1', 'cell-1', { model: { name: 'fashion-sgmoe', version: '0.9.0' } });
  const offline = await ScriptedDevice.start(broker.url, 'plant-1', 'cell-4', { model: { name: 'fashion-sgmoe', version: '0.9.0' } });
  // As the broker does with its last will when the node is lost.
  await offline.status('offline', offline.info);
  try {
    const run = await sgmoeAsync('model', 'publish', packed.tar, '--broker', broker.url, '--site', 'plant-1', '--device', 'cell-1,cell-4', '--key', keyPath, '--url', 'http://127.0.0.1:9/pkg.tar', '--timeout', '5');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/E_DEVICE_OFFLINE: offline by its retained status: cell-4 \(lost, last seen \S+\)\. A command is not kept for an offline device/);
    expect([online.received, offline.received]).toEqual([0, 0]);
  } finally {
    await online.close();
    await offline.close();
  }
});

test('publish of a package directory asks for the signed tar, instead of saying it is not signed', async () => {
  const run = await sgmoeAsync('model', 'publish', BUNDLED, '--broker', broker.url, '--site', 'plant-1', '--device', 'cell-1', '--key', keyPath, '--url', 'http://127.0.0.1:9/x.tar');
  expect(run.status).toBe(1);
  expect(run.stderr).toContain(`E_USAGE: ${BUNDLED}: expected a signed package tar, found a directory: pack and sign it first (\`sgmoe model pack ${BUNDLED} OUT.tar\``);
  expect(run.stderr).not.toContain('E_SIGNATURE_MISSING');
});

test('rollback without flags names both ways: over MQTT, and on a stopped device with --config or --root', async () => {
  const run = await sgmoeAsync('model', 'rollback');
  expect(run.status).toBe(1);
  expect(run.stderr).toMatch(/E_USAGE: rollback: expected --broker, --site and --device .*, or --config FILE or --root DIR \(on a device whose node is stopped\)/);
});

test("publish's periodic line says how long the device is at its step and when its command was sent, not a total that reads as the watch", () => {
  expect(formatRunning([{ device: 'cell-2', step: 'watching', stepMs: 9_600, elapsedMs: 10_000 }])).toBe('  … cell-2 watching for 9.6 s (command sent 10.0 s ago)');
});
