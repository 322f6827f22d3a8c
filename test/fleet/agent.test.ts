import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { AuditLog } from '../../src/audit/audit-log';
import { listEvents } from '../../src/audit/query';
import { Engine } from '../../src/engine/engine';
import { UpdateAgent, type UpdateEvent } from '../../src/fleet/agent';
import { generateSigningKey, readPrivateKey, readPublicKey, TrustedKeys } from '../../src/fleet/keys';
import { packPackage } from '../../src/fleet/pack';
import { signPackage } from '../../src/fleet/signature';
import type { PackageSignature } from '../../src/protocol/signature';
import { SerialEngineHost } from './serial-host';
import { PackageStore } from '../../src/fleet/store';
import type { UpdateRequestInput } from '../../src/protocol/update';
import { sha256File } from '../../src/model/integrity';
import { copyPackage, fileHashes } from '../helpers/package';
import { logRequests, type RequestLog } from '../helpers/http-log';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { auditedHost, breakSelftest, goldenInputs, streamFrames, variant, versionBoundaries } from './support';

const ENGINE = { threads: { intraOp: 1 }, warmup: false };
const tmp = tempDir('sgmoe-fleet-agent-');
const pub = join(tmp.path, 'pub');
/** Every request a device makes for a package, logged. */
let server: RequestLog;
let trusted: TrustedKeys;
let inputs: Float32Array[];
let v1: string;
/** Signed, served packages by name: their update requests. */
const offers: Record<string, UpdateRequestInput> = {};

async function offer(name: string, dir: string, key = join(tmp.path, 'fleet.key')): Promise<UpdateRequestInput> {
  const tarPath = join(pub, `${name}.tar`);
  const packed = await packPackage(dir, tarPath);
  const signature = await signPackage(tarPath, await readPrivateKey(key));
  return (offers[name] = { url: `${server.url}${name}.tar`, sha256: packed.sha256, signature, version: packed.version });
}

/** A tar of a valid package plus one extra entry made by `add` (run in the package dir), signed by the fleet key. */
async function offerWithExtraEntry(name: string, version: string, extra: string, add: (dir: string) => void): Promise<UpdateRequestInput> {
  const dir = variant(join(tmp.path, 'src', name, 'pkg'), (m) => (m.version = version));
  add(dir);
  const tarPath = join(pub, `${name}.tar`);
  const files = readdirSync(dir, { recursive: true, withFileTypes: false }).map(String).filter((f) => f !== extra && !f.startsWith('..'));
  await tar.c({ cwd: dir, file: tarPath, preservePaths: true }, [...files, extra]);
  const sha256 = await sha256File(tarPath);
  const signature = await signPackage(tarPath, await readPrivateKey(join(tmp.path, 'fleet.key')));
  return (offers[name] = { url: `${server.url}${name}.tar`, sha256, signature, version });
}

beforeAll(async () => {
  mkdirSync(pub, { recursive: true });
  server = await logRequests(pub, { stall: (path) => path.startsWith('stalling') });
  await generateSigningKey(join(tmp.path, 'fleet'));
  await generateSigningKey(join(tmp.path, 'rogue'));
  trusted = new TrustedKeys([await readPublicKey(join(tmp.path, 'fleet.pub'))]);
  v1 = copyPackage(join(tmp.path, 'src', 'v1'));
  inputs = await goldenInputs(v1);
  // 1.1.0: the same networks, but every frame goes on to an expert (no early exit): visibly different decisions.
  await offer('v2', variant(join(tmp.path, 'src', 'v2'), (m) => {
    m.version = '1.1.0';
    m.routing.earlyExit.threshold = 1.000001;
  }));
  // 1.2.0 claims that expert 0 takes every routed frame: routing health sees a drift as soon as it runs.
  await offer('drifting', variant(join(tmp.path, 'src', 'drifting'), (m) => {
    m.version = '1.2.0';
    m.routing.earlyExit.threshold = 1.000001;
    m.calibration.expertShare = m.calibration.expertShare.map((_, e) => (e === 0 ? 1 : 0));
  }));
  const broken = variant(join(tmp.path, 'src', 'broken'), (m) => (m.version = '1.3.0'));
  breakSelftest(broken);
  await offer('broken-selftest', broken);
  // 1.0.0 again: the same files as the device's first package, and (as in a field trial) a copy whose self-test was altered.
  await offer('same-1.0.0', v1);
  const brokenV1 = copyPackage(join(tmp.path, 'src', 'broken-1.0.0'));
  breakSelftest(brokenV1);
  await offer('broken-1.0.0', brokenV1);
  await offer('rogue', join(tmp.path, 'src', 'v2'), join(tmp.path, 'rogue.key'));
  await offerWithExtraEntry('traversal', '1.4.0', '../escape.txt', (dir) => writeFileSync(join(dir, '..', 'escape.txt'), 'outside'));
  await offerWithExtraEntry('symlink', '1.5.0', 'link', (dir) => symlinkSync('/etc/passwd', join(dir, 'link')));
  // Same bytes as v2 but one flipped in the middle: the signature and sha256 in the request are v2's.
  copyFileSync(join(pub, 'v2.tar'), join(pub, 'tampered.tar'));
  const { openSync, readSync, writeSync, closeSync, statSync } = await import('node:fs');
  const fd = openSync(join(pub, 'tampered.tar'), 'r+');
  const at = Math.floor(statSync(join(pub, 'tampered.tar')).size / 2);
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, at);
  byte[0] ^= 0xff;
  writeSync(fd, byte, 0, 1, at);
  closeSync(fd);
  offers.tampered = { ...offers.v2, url: `${server.url}tampered.tar` };
  // The signed drifting package from a server that sends its headers and a few bytes, then nothing.
  copyFileSync(join(pub, 'drifting.tar'), join(pub, 'stalling.tar'));
  offers.stalling = { ...offers.drifting, url: `${server.url}stalling.tar` };
});

afterAll(async () => {
  await server?.close();
  tmp.cleanup();
});

interface Device {
  root: string;
  store: PackageStore;
  host: SerialEngineHost;
  audit: AuditLog;
  agent: UpdateAgent;
  events: UpdateEvent[];
  close(): Promise<void>;
}

let deviceCount = 0;
const open: Device[] = [];
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
});

/** A device running 1.0.0 from its store, closed after the test (or, when `keep`, by the caller). */
async function device(options: { limits?: ConstructorParameters<typeof UpdateAgent>[0]['limits']; keep?: boolean } = {}): Promise<Device> {
  const root = join(tmp.path, `device-${deviceCount++}`);
  const store = new PackageStore(root, 2);
  await store.adopt(v1);
  const engine = await Engine.load((await store.currentDir())!, ENGINE);
  const { audit, host, probe } = auditedHost(root, engine);
  const events: UpdateEvent[] = [];
  const agent = new UpdateAgent({
    store,
    host,
    probe,
    trustedKeys: trusted,
    engine: ENGINE,
    limits: options.limits,
    // The golden inputs are 18 hand-picked images, not the validation set: their expert shares sit about 0.4 from
    // the calibration, so the drift bound here separates that from a package that claims one expert takes all.
    watch: { windowMs: 1500, intervalMs: 100, minFrames: 5, minRouted: 20, maxDrift: 0.6 },
    onEvent: (e) => {
      events.push(e);
      if (e.model) audit.modelChanged(e.step === 'rolled_back' ? 'model_rolled_back' : 'model_updated', e.model, { correlationId: e.correlationId });
    },
  });
  let closed = false;
  const d: Device = {
    root,
    store,
    host,
    audit,
    agent,
    events,
    close: async () => {
      if (closed) return;
      closed = true;
      audit.close();
      await host.engine.dispose();
    },
  };
  if (!options.keep) open.push(d);
  return d;
}

function auditRows(root: string): { versions: Array<{ model_version: string; n: number }>; events: ReturnType<typeof listEvents> } {
  const db = new Database(join(root, 'audit.db'), { readonly: true });
  try {
    const versions = db.prepare('SELECT model_version, count(*) AS n FROM decisions GROUP BY model_version ORDER BY model_version').all() as Array<{ model_version: string; n: number }>;
    return { versions, events: listEvents(db) };
  } finally {
    db.close();
  }
}

test('updates to a signed 1.1.0 while frames stream: no frame lost or failed, one version boundary, audited', async () => {
  const d = await device();
  const stream = streamFrames((t, id) => d.host.infer(t, id), inputs);
  const result = await d.agent.update(offers.v2, 'corr-1', '0123456789abcdef').finally(() => stream.stop());
  const log = await stream.stop();
  await d.close();

  expect(result).toEqual({ step: 'done', version: '1.1.0', previous: 'fashion-sgmoe-1.0.0' });
  expect(log.failures).toEqual([]);
  expect(log.versions.length).toBe(stream.submitted());
  expect(versionBoundaries(log.versions)).toHaveLength(1);
  expect(log.versions[0]).toBe('1.0.0');
  expect(log.versions.at(-1)).toBe('1.1.0');
  // The new threshold is in force from the boundary on: no 1.1.0 frame exits early, some 1.0.0 frames did.
  const boundary = versionBoundaries(log.versions)[0];
  expect(log.earlyExits.slice(boundary).every((e) => !e)).toBe(true);
  expect(log.earlyExits.slice(0, boundary).some((e) => e)).toBe(true);

  expect(d.events.map((e) => e.step)).toEqual(['requested', 'downloading', 'verifying', 'unpacking', 'selftesting', 'staged', 'swapping', 'watching', 'done']);
  // Every step names the request and the operator key that authorised it, for its audit event.
  expect(d.events.every((e) => e.correlationId === 'corr-1' && e.keyId === '0123456789abcdef')).toBe(true);
  expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.1.0', history: ['fashion-sgmoe-1.0.0'] });
  expect((await d.store.readState())?.step).toBe('done');
  expect(readdirSync(join(d.root, 'staging'))).toEqual([]);

  const audit = auditRows(d.root);
  expect(audit.versions).toEqual([
    { model_version: '1.0.0', n: boundary },
    { model_version: '1.1.0', n: log.versions.length - boundary },
  ]);
  const updated = audit.events.filter((e) => e.kind === 'model_updated');
  expect(updated).toHaveLength(1);
  expect(updated[0]).toMatchObject({ modelVersion: '1.1.0', details: { from: { version: '1.0.0' }, correlationId: 'corr-1' } });
});

test('a health regression (routing drift against the new expertShare) rolls back automatically, frames unharmed', async () => {
  const d = await device();
  const stream = streamFrames((t, id) => d.host.infer(t, id), inputs);
  await expect(d.agent.update(offers.drifting, 'corr-2')).rejects.toMatchObject({ code: 'E_HEALTH_REGRESSION', message: expect.stringMatching(/routing drift 0\.\d+/) });
  const log = await stream.stop();
  await d.close();

  expect(log.failures).toEqual([]);
  expect(log.versions.length).toBe(stream.submitted());
  // 1.0.0, then 1.2.0, then 1.0.0 again: exactly two boundaries.
  expect(versionBoundaries(log.versions).map((i) => log.versions[i])).toEqual(['1.2.0', '1.0.0']);
  expect(log.versions.at(-1)).toBe('1.0.0');
  const last = d.events.at(-1)!;
  expect(last).toMatchObject({ step: 'rolled_back', error: { code: 'E_HEALTH_REGRESSION' }, model: { version: '1.0.0' } });
  expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
  expect(readdirSync(join(d.root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
  expect(auditRows(d.root).events.filter((e) => e.kind === 'model_rolled_back')).toHaveLength(1);
});

describe('refusals leave the running package untouched and say why', () => {
  let d: Device;
  beforeAll(async () => {
    d = await device({ keep: true });
  });
  afterAll(async () => d.close());

  test.each([
    ['tampered', 'E_HASH_MISMATCH', 'verifying'],
    ['traversal', 'E_UNPACK_UNSAFE', 'unpacking'],
    ['symlink', 'E_UNPACK_UNSAFE', 'unpacking'],
    ['broken-selftest', 'E_SELFTEST_FAILED', 'selftesting'],
  ])('%s package → %s at %s', async (name, code, step) => {
    d.events.length = 0;
    await expect(d.agent.update(offers[name], name)).rejects.toMatchObject({ code });
    expect(d.events.at(-2)?.step).toBe(step);
    expect(d.events.at(-1)).toMatchObject({ step: 'failed', correlationId: name, error: { code }, at: step });
    expect(d.host.engine.model.version).toBe('1.0.0');
    expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
    expect(readdirSync(join(d.root, 'packages'))).toEqual(['fashion-sgmoe-1.0.0']);
    expect(readdirSync(join(d.root, 'staging'))).toEqual([]);
    expect(await d.store.readState()).toMatchObject({ step: 'failed', error: { code } });
    expect(existsSync(join(d.root, 'escape.txt'))).toBe(false);
  });

  test('an unsigned package is refused before anything is downloaded', async () => {
    const { signature, ...unsigned } = offers.v2;
    void signature;
    await expect(d.agent.update(unsigned)).rejects.toMatchObject({ code: 'E_SIGNATURE_MISSING' });
    expect(readdirSync(join(d.root, 'downloads'))).toEqual([]);
  });

  test.each([
    ['signed by an untrusted key', 'E_SIGNATURE_UNKNOWN_KEY', () => offers.rogue],
    ['with a forged signature (a trusted key id on another key\'s)', 'E_SIGNATURE_INVALID', () => ({
      ...offers.rogue,
      signature: { ...(offers.rogue.signature as PackageSignature), keyId: (offers.v2.signature as PackageSignature).keyId },
    })],
  ])('a package %s is refused with %s before any byte is fetched', async (_what, code, request) => {
    d.events.length = 0;
    const before = server.requests.length;
    await expect(d.agent.update(request(), 'sig')).rejects.toMatchObject({ code });
    expect(server.requests.slice(before)).toEqual([]);
    // Refused where it was requested: nothing began.
    expect(d.events.map((e) => [e.step, e.at])).toEqual([
      ['requested', undefined],
      ['failed', 'requested'],
    ]);
    expect(d.host.engine.model.version).toBe('1.0.0');
    expect(readdirSync(join(d.root, 'downloads'))).toEqual([]);
  });

  test('a version that is not newer is refused unless forced', async () => {
    const same = { ...offers.v2, version: '1.0.0' };
    await expect(d.agent.update(same)).rejects.toMatchObject({ code: 'E_VERSION_NOT_NEWER' });
    // Forced, the package's own manifest must still say what the request announces.
    await expect(d.agent.update({ ...same, force: true })).rejects.toMatchObject({ code: 'E_VERSION_MISMATCH' });
  });

  test('a malformed request is refused with the problems listed', async () => {
    await expect(d.agent.update({ url: 'ftp://x/y.tar', sha256: 'abc', version: '1' })).rejects.toMatchObject({
      code: 'E_UPDATE_INVALID',
      message: expect.stringContaining('sha256'),
    });
  });
});

test('an oversized package is refused while downloading and nothing of it is kept', async () => {
  const d = await device({ limits: { maxDownloadBytes: 100_000 } });
  await expect(d.agent.update(offers.v2)).rejects.toMatchObject({ code: 'E_DOWNLOAD_TOO_LARGE' });
  expect(readdirSync(join(d.root, 'downloads'))).toEqual([]);
  expect(d.host.engine.model.version).toBe('1.0.0');
});

test('a package that unpacks beyond the file-count limit is refused', async () => {
  const d = await device({ limits: { maxFiles: 5 } });
  await expect(d.agent.update(offers.v2)).rejects.toMatchObject({ code: 'E_UNPACK_LIMIT' });
});

test('rollback goes back to the previous package on a running device', async () => {
  const d = await device();
  await d.agent.update(offers.v2);
  expect(d.host.engine.model.version).toBe('1.1.0');
  expect(await d.agent.rollback('rb-1', '0123456789abcdef')).toEqual({ from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0' });
  expect(d.host.engine.model.version).toBe('1.0.0');
  expect(d.events.at(-1)).toMatchObject({ step: 'rolled_back', correlationId: 'rb-1', keyId: '0123456789abcdef', model: { version: '1.0.0' } });
  await expect(d.agent.rollback()).rejects.toMatchObject({ code: 'E_ROLLBACK_NONE' });
});

describe('a package under a name and version the device keeps', () => {
  test('with other files, it is refused before the store is touched: the entry kept for rollback stays as it was, and the rollback runs it', async () => {
    const d = await device();
    await d.agent.update(offers.v2);
    const kept = join(d.root, 'packages', 'fashion-sgmoe-1.0.0');
    const before = fileHashes(kept);

    const refused = await d.agent.update({ ...offers['broken-1.0.0'], force: true }, 'republish').catch((err: unknown) => err);
    expect(fileHashes(kept)).toEqual(before);
    expect(refused).toMatchObject({ code: 'E_VERSION_CONFLICT', message: expect.stringMatching(/a different package fashion-sgmoe-1\.0\.0 is already on this device .*give this one a new version/) });
    expect(d.events.at(-1)).toMatchObject({ step: 'failed', error: { code: 'E_VERSION_CONFLICT' }, at: 'unpacking' });
    expect(d.host.engine.model.version).toBe('1.1.0');
    expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.1.0', history: ['fashion-sgmoe-1.0.0'] });
    expect(readdirSync(join(d.root, 'staging'))).toEqual([]);

    // The rollback loads and self-tests the package that was kept: the good 1.0.0.
    expect(await d.agent.rollback('rb')).toEqual({ from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0' });
    expect(d.host.engine.model.version).toBe('1.0.0');
    expect(fileHashes(d.host.engine.pkg.dir)).toEqual(fileHashes(v1));
  });

  test('with the same files, it installs as before (a forced return to it) and leaves its files untouched; the running one is not installed twice', async () => {
    const d = await device();
    await d.agent.update(offers.v2);
    const kept = join(d.root, 'packages', 'fashion-sgmoe-1.0.0');
    const before = fileHashes(kept);

    await expect(d.agent.update({ ...offers['same-1.0.0'], force: true })).resolves.toEqual({ step: 'done', version: '1.0.0', previous: 'fashion-sgmoe-1.1.0' });
    expect(d.host.engine.model.version).toBe('1.0.0');
    expect(fileHashes(kept)).toEqual(before);
    expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: ['fashion-sgmoe-1.1.0'] });

    await expect(d.agent.update({ ...offers['same-1.0.0'], force: true })).rejects.toMatchObject({ code: 'E_VERSION_NOT_NEWER', message: 'fashion-sgmoe-1.0.0 is the package running now' });
    await expect(d.agent.update({ ...offers['broken-1.0.0'], force: true })).rejects.toMatchObject({ code: 'E_VERSION_CONFLICT', message: expect.stringContaining('the package it runs') });
    expect(fileHashes(kept)).toEqual(before);
    expect(readdirSync(join(d.root, 'packages')).sort()).toEqual(['fashion-sgmoe-1.0.0', 'fashion-sgmoe-1.1.0']);
  });

  test('a package changed on disk since it entered the store is not rolled back to', async () => {
    const d = await device();
    await d.agent.update(offers.v2);
    const manifest = join(d.root, 'packages', 'fashion-sgmoe-1.0.0', 'manifest.json');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('"T-shirt/top"', '"Tee"'));

    await expect(d.agent.rollback()).rejects.toMatchObject({ code: 'E_STORE_CORRUPT', message: expect.stringContaining('fashion-sgmoe-1.0.0 this store installed') });
    expect(d.host.engine.model.version).toBe('1.1.0');
    expect(await d.store.pointer()).toEqual({ current: 'fashion-sgmoe-1.1.0', history: ['fashion-sgmoe-1.0.0'] });
    // The package it was installed from, published again, does not paper over the change: it is named, not overwritten.
    await expect(d.agent.update({ ...offers['same-1.0.0'], force: true })).rejects.toMatchObject({ code: 'E_STORE_CORRUPT', message: expect.stringContaining('was changed on disk since it was installed') });
    expect(readFileSync(manifest, 'utf8')).toContain('"Tee"');
  });
});

describe('a download that stalls does not hold the update slot', () => {
  /** Starts the stalling update; resolves once the device is downloading it (its request reached the server). */
  async function stuck(d: Device, id: string): Promise<{ outcome: Promise<unknown> }> {
    const before = server.requests.length;
    const update = d.agent.update(offers.stalling, id).catch((err: unknown) => err);
    await waitUntil(() => server.requests.length > before && d.events.some((e) => e.correlationId === id && e.step === 'downloading'), 10_000, 'the stalled download');
    return { outcome: update };
  }

  test('no progress for stallTimeoutMs aborts the transfer with E_DOWNLOAD_TIMEOUT, and the next update runs', async () => {
    const d = await device({ limits: { stallTimeoutMs: 300 } });
    await expect(d.agent.update(offers.stalling, 'stall')).rejects.toMatchObject({ code: 'E_DOWNLOAD_TIMEOUT', message: expect.stringContaining('stalled') });
    await expect(d.agent.update(offers.v2, 'next')).resolves.toMatchObject({ step: 'done', version: '1.1.0' });
  });

  test('a newer rollback and then a newer update replace a download in progress (E_UPDATE_REPLACED), leaving no partial file', async () => {
    const d = await device();
    const first = await stuck(d, 'stuck-1');
    // The rollback runs (and finds no earlier package) instead of being refused with E_UPDATE_BUSY.
    await expect(d.agent.rollback()).rejects.toMatchObject({ code: 'E_ROLLBACK_NONE' });
    expect(await first.outcome).toMatchObject({ code: 'E_UPDATE_REPLACED' });

    const second = await stuck(d, 'stuck-2');
    await expect(d.agent.update(offers.v2, 'newer')).resolves.toMatchObject({ step: 'done', version: '1.1.0' });
    expect(await second.outcome).toMatchObject({ code: 'E_UPDATE_REPLACED' });
    expect(d.events.filter((e) => e.step === 'failed').map((e) => [e.correlationId, e.error?.code])).toEqual([
      ['stuck-1', 'E_UPDATE_REPLACED'],
      ['stuck-2', 'E_UPDATE_REPLACED'],
    ]);
    expect(readdirSync(join(d.root, 'downloads'))).toEqual([]);
  });
});

test('partial downloads that no request owns are removed when the device starts', async () => {
  const d = await device();
  writeFileSync(join(d.root, 'downloads', `${'b'.repeat(64)}.tar.part`), 'left by a download that timed out');
  await d.store.recover();
  expect(readdirSync(join(d.root, 'downloads'))).toEqual([]);
});
