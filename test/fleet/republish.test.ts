/**
 * The field trial: a device runs 1.1.0 with 1.0.0 kept to roll back to; the operator publishes, forced, another
 * package that is also 1.0.0 (its self-test altered). The device refuses it, and nothing of it may stay: after the
 * node stops, the offline rollback and a restart run the 1.0.0 the device had.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSelftest } from '../../src/engine/selftest-run';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { signPackage } from '../../src/fleet/signature';
import { loadSelftest } from '../../src/model/selftest';
import { parseNodeConfig, type NodeConfigInput } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import type { UpdateRequestInput } from '../../src/protocol/update';
import { sgmoeAsync } from '../helpers/cli';
import { copyPackage, fileHashes } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { breakSelftest, variant } from './support';

const tmp = tempDir('sgmoe-fleet-republish-');
let server: PackageServer;
let v1: string;
const offers: Record<string, UpdateRequestInput> = {};

beforeAll(async () => {
  const pub = join(tmp.path, 'pub');
  mkdirSync(pub);
  server = await servePackages(pub);
  const key = await readPrivateKey((await generateSigningKey(join(tmp.path, 'operator'))).privateKeyPath);
  const offer = async (name: string, dir: string) => {
    const packed = await packPackage(dir, join(pub, `${name}.tar`));
    offers[name] = { url: `${server.url}${name}.tar`, sha256: packed.sha256, signature: await signPackage(packed.tar, key), version: packed.version };
  };
  v1 = copyPackage(join(tmp.path, 'v1'));
  await offer('v2', variant(join(tmp.path, 'v2'), (m) => (m.version = '1.1.0')));
  const altered = copyPackage(join(tmp.path, 'altered-1.0.0'));
  breakSelftest(altered);
  await offer('altered', altered);
});

afterAll(async () => {
  await server?.close();
  tmp.cleanup();
});

test('a refused package of a version kept for rollback changes nothing: the offline rollback and a restart run the good 1.0.0', async () => {
  const root = join(tmp.path, 'cell-4', 'fleet');
  const config: NodeConfigInput = {
    model: v1,
    device: 'x86_64-cpu',
    threads: 1,
    audit: { file: join(tmp.path, 'cell-4', 'audit.db') },
    fleet: { root, trustedKeys: [join(tmp.path, 'operator.pub')], watch: { windowMs: 200, intervalMs: 50 } },
  };
  const configPath = join(tmp.path, 'cell-4', 'node.json');
  mkdirSync(join(tmp.path, 'cell-4'));
  writeFileSync(configPath, JSON.stringify(config));
  const kept = join(root, 'packages', 'fashion-sgmoe-1.0.0');

  const first = await createEdgeNode(parseNodeConfig(config));
  let refused: unknown;
  let before: Record<string, string>;
  try {
    await expect(first.agent!.update(offers.v2, 'to-1.1.0')).resolves.toMatchObject({ step: 'done', version: '1.1.0' });
    before = fileHashes(kept);
    refused = await first.agent!.update({ ...offers.altered, force: true }, 'altered-1.0.0').catch((err: unknown) => err);
    expect(first.node.engine.model.version).toBe('1.1.0');
  } finally {
    await first.node.stop();
  }
  expect(fileHashes(kept)).toEqual(before);
  expect(fileHashes(kept)).toEqual(fileHashes(v1));
  expect(refused).toMatchObject({ code: 'E_VERSION_CONFLICT' });

  const rollback = await sgmoeAsync('model', 'rollback', '--config', configPath, '--id', 'offline');
  expect(rollback.stderr).toBe('');
  expect(rollback.status).toBe(0);
  expect(rollback.stdout).toContain('rolled back from fashion-sgmoe-1.1.0 to fashion-sgmoe-1.0.0');

  const restarted = await createEdgeNode(parseNodeConfig(config));
  try {
    const { engine } = restarted.node;
    expect(engine.model.version).toBe('1.0.0');
    expect(engine.pkg.dir).toBe(kept);
    expect(fileHashes(engine.pkg.dir)).toEqual(fileHashes(v1));
    expect((await runSelftest(engine, await loadSelftest(engine.pkg.selftestPath))).ok).toBe(true);
  } finally {
    await restarted.node.stop();
  }
});
