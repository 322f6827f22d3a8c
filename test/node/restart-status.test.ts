import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { readInventory } from '../../src/fleet/inventory';
import { generateSigningKey } from '../../src/fleet/keys';
import { PackageStore } from '../../src/fleet/store';
import { DEFAULT_TOPIC_PREFIX } from '../../src/protocol';
import { copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

test('after a restart the retained status still tells how the last update ended, as history beside the model that runs', async () => {
  const root = join(tmp.path, 'fleet');
  const store = new PackageStore(root);
  await store.adopt(copyPackage(join(tmp.path, 'v1')));
  // What a refused update left in the store before the node stopped.
  const error = { code: 'E_SIGNATURE_UNKNOWN_KEY', message: 'signed by key 0123456789abcdef, expected one of the trusted keys' };
  await store.writeState({ step: 'failed', correlationId: 'before-restart', version: '1.1.0', sha256: 'a'.repeat(64), target: null, previous: 'fashion-sgmoe-1.0.0', error });
  const keys = await generateSigningKey(join(tmp.path, 'operator'));

  const node = await sampleNode({
    sources: [],
    once: false,
    mqtt: { embeddedBroker: { port: 0 }, site: 'plant-1', device: 'cell-5' },
    fleet: { root, trustedKeys: [keys.publicKeyPath], watch: { windowMs: 7000 } },
  });
  const running = node.node.run();
  const client = await connectAsync(node.broker!.url);
  try {
    const { inventory, stop } = await readInventory(client, { site: 'plant-1', topicPrefix: DEFAULT_TOPIC_PREFIX });
    await stop();
    expect(inventory.devices).toEqual([
      expect.objectContaining({ device: 'cell-5', state: 'online', version: '1.0.0', update: 'last: failed 1.1.0 E_SIGNATURE_UNKNOWN_KEY', watchWindowMs: 7000, healthIntervalMs: 10_000 }),
    ]);
  } finally {
    await client.endAsync();
    await node.node.stop();
    await running;
  }
});
