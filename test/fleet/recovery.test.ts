import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { runSelftest } from '../../src/engine/selftest-run';
import { generateSigningKey, readPrivateKey } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import type { UpdateRequestInput } from '../../src/protocol/update';
import { servePackages, type PackageServer } from '../../src/fleet/serve';
import { signPackage } from '../../src/fleet/signature';
import { PackageStore } from '../../src/fleet/store';
import { loadSelftest } from '../../src/model/selftest';
import { copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { breakSelftest, variant } from './support';

const ROOT = resolve(__dirname, '..', '..');
const tmp = tempDir('sgmoe-fleet-recovery-');
let server: PackageServer;
let seed: string;
let request: UpdateRequestInput;

beforeAll(async () => {
  const pub = join(tmp.path, 'pub');
  mkdirSync(pub);
  server = await servePackages(pub);
  await generateSigningKey(join(tmp.path, 'fleet'));
  seed = copyPackage(join(tmp.path, 'v1'));
  const v2 = variant(join(tmp.path, 'v2'), (m) => (m.version = '1.1.0'));
  const packed = await packPackage(v2, join(pub, 'v2.tar'));
  const signature = await signPackage(packed.tar, await readPrivateKey(join(tmp.path, 'fleet.key')));
  request = { url: `${server.url}v2.tar`, sha256: packed.sha256, signature, version: '1.1.0' };
});

afterAll(async () => {
  await server?.close();
  tmp.cleanup();
});

/** Runs a device process that is SIGKILLed when its update reaches `killAt` (async: this process serves the package). */
async function killDeviceAt(root: string, killAt: string): Promise<void> {
  const child = spawn(
    join(ROOT, 'node_modules', '.bin', 'tsx'),
    [join(__dirname, 'fixtures', 'crash-agent.ts'), JSON.stringify({ root, seed, trustedKey: join(tmp.path, 'fleet.pub'), request, killAt })],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const [code, signal] = await new Promise<[number | null, string | null]>((ok) => child.on('exit', (c, s) => ok([c, s])));
  // tsx re-raises its child's signal; either way the device died without a chance to clean up.
  expect({ killed: signal === 'SIGKILL' || code === 137, stderr }).toEqual({ killed: true, stderr: '' });
}

/** After recovery the device must run a package that loads with every hash right and passes its self-test. */
async function expectRunsVerified(dir: string, version: string): Promise<void> {
  const engine = await Engine.load(dir, { threads: { intraOp: 1 }, warmup: false });
  try {
    expect(engine.model.version).toBe(version);
    expect((await runSelftest(engine, await loadSelftest(engine.pkg.selftestPath))).ok).toBe(true);
  } finally {
    await engine.dispose();
  }
}

test('killed between stage and swap: the restart drops the staged package and runs 1.0.0', async () => {
  const root = join(tmp.path, 'device-staged');
  await killDeviceAt(root, 'staged');
  const store = new PackageStore(root);
  expect((await store.readState())?.step).toBe('staged');
  expect(readdirSync(join(root, 'packages')).sort()).toEqual(['fashion-sgmoe-1.0.0', 'fashion-sgmoe-1.1.0']);

  const recovery = await store.recover();
  expect(recovery.action).toBe('aborted');
  expect(recovery.state).toMatchObject({ step: 'failed', error: { code: 'E_UPDATE_INTERRUPTED' }, correlationId: 'crash' });
  expect(recovery.currentDir).toBe(join(root, 'packages', 'fashion-sgmoe-1.0.0'));
  expect(readdirSync(join(root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
  expect(readdirSync(join(root, 'staging'))).toEqual([]);
  await expectRunsVerified(recovery.currentDir!, '1.0.0');
  // A second start finds nothing half-done.
  expect((await store.recover()).action).toBe('none');
});

test('killed as its self-test begins in staging: the package never reached the store, and the restart clears what was staged', async () => {
  const root = join(tmp.path, 'device-selftesting');
  await killDeviceAt(root, 'selftesting');
  const store = new PackageStore(root);
  expect((await store.readState())?.step).toBe('selftesting');
  expect(readdirSync(join(root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
  expect(readdirSync(join(root, 'staging'))).toEqual([request.sha256]);

  const recovery = await store.recover();
  expect(recovery.action).toBe('aborted');
  expect(readdirSync(join(root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
  expect(readdirSync(join(root, 'staging'))).toEqual([]);
  expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
  await expectRunsVerified(recovery.currentDir!, '1.0.0');
});

test('a staged leftover that no update owns is cleared at start, even after an update that ended', async () => {
  const root = join(tmp.path, 'device-leftover');
  const store = new PackageStore(root);
  await store.adopt(seed);
  await store.writeState({ step: 'done', correlationId: null, version: '1.0.0', sha256: 'a'.repeat(64), target: null, previous: null, error: null });
  copyPackage(join(root, 'staging', 'b'.repeat(64)));

  expect((await store.recover()).action).toBe('none');
  expect(readdirSync(join(root, 'staging'))).toEqual([]);
  expect(readdirSync(join(root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
  await store.lock.release();
});

test('a package changed on disk since it entered the store does not start: E_STORE_CORRUPT, until it is put back', async () => {
  const root = join(tmp.path, 'device-changed');
  const store = new PackageStore(root);
  await store.adopt(seed);
  const selftest = join(root, 'packages', 'fashion-sgmoe-1.0.0', 'selftest.json');
  const saved = readFileSync(selftest);
  breakSelftest(join(root, 'packages', 'fashion-sgmoe-1.0.0'));

  await expect(store.recover()).rejects.toMatchObject({
    code: 'E_STORE_CORRUPT',
    message: expect.stringMatching(/fashion-sgmoe-1\.0\.0 is not the package fashion-sgmoe-1\.0\.0 this store installed: its files hash to [0-9a-f]{64}, .*digests\.json recorded [0-9a-f]{64}; it is not run/),
  });
  writeFileSync(selftest, saved);
  expect((await store.recover()).currentDir).toBe(join(root, 'packages', 'fashion-sgmoe-1.0.0'));
  await store.lock.release();
});

test('killed between swap and the end of the health watch: the restart rolls back to 1.0.0', async () => {
  const root = join(tmp.path, 'device-watching');
  await killDeviceAt(root, 'watching');
  const store = new PackageStore(root);
  expect((await store.readState())?.step).toBe('watching');
  expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.1.0', history: ['fashion-sgmoe-1.0.0'] });

  const recovery = await store.recover();
  expect(recovery.action).toBe('rolled_back');
  expect(recovery.state).toMatchObject({ step: 'rolled_back', error: { code: 'E_UPDATE_INTERRUPTED' } });
  expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
  await expectRunsVerified(recovery.currentDir!, '1.0.0');
  expect((await store.recover()).action).toBe('none');
});

test('a `current` pointer that exists but cannot be read stops the store with E_FILE_UNREADABLE instead of being rewritten', async () => {
  const root = join(tmp.path, 'unreadable-device');
  const store = new PackageStore(root);
  await store.adopt(seed);
  // A directory where the pointer file should be: a real read error other than ENOENT (EISDIR), as EACCES or EIO would be.
  const pointer = join(root, 'current');
  const saved = readFileSync(pointer);
  rmSync(pointer);
  mkdirSync(pointer);
  await expect(store.pointer()).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE' });
  await expect(store.adopt(seed)).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE' });
  await expect(store.recover()).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE' });
  rmSync(pointer, { recursive: true });
  writeFileSync(pointer, saved);
  expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
});
