import { join } from 'node:path';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { signPackage, writeSignature } from '../../src/fleet/signature';
import { EmbeddedBroker } from '../../src/transport/broker';
import { sgmoeAsync } from '../helpers/cli';
import { copyPackage } from '../helpers/package';
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
