import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { generateSigningKey, keyIdOf, readPrivateKey, readPublicKey, TrustedKeys } from '../../src/fleet/keys';
import { packPackage, readTarManifest } from '../../src/fleet/pack';
import { compareVersions } from '../../src/fleet/semver';
import { readSignature, signPackage, verifySignedPackage, writeSignature } from '../../src/fleet/signature';
import { unpackPackage } from '../../src/fleet/unpack';
import { verifySignedTar } from '../../src/fleet/verify-tar';
import { BUNDLED, copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-fleet-pack-');
const LIMITS = { maxBytes: 64 * 2 ** 20, maxFiles: 1000 };
let pkg: string;
let trusted: TrustedKeys;

beforeAll(async () => {
  pkg = copyPackage(join(tmp.path, 'pkg'));
  await generateSigningKey(join(tmp.path, 'fleet'));
  trusted = new TrustedKeys([await readPublicKey(join(tmp.path, 'fleet.pub'))]);
});
afterAll(() => tmp.cleanup());

test('keygen writes an ed25519 pair whose id is the sha256 of the public key DER; it never overwrites', async () => {
  const pub = await readPublicKey(join(tmp.path, 'fleet.pub'));
  const der = pub.export({ type: 'spki', format: 'der' });
  expect(keyIdOf(pub)).toBe(createHash('sha256').update(der).digest('hex').slice(0, 16));
  expect(keyIdOf(await readPrivateKey(join(tmp.path, 'fleet.key')))).toBe(keyIdOf(pub));
  expect(statSync(join(tmp.path, 'fleet.key')).mode & 0o777).toBe(0o600);
  await expect(generateSigningKey(join(tmp.path, 'fleet'))).rejects.toMatchObject({ code: 'E_KEY_EXISTS' });
});

test('keygen into a folder that does not exist yet makes it (as `sgmoe model keygen keys/operator` on a clean machine)', async () => {
  const key = await generateSigningKey(join(tmp.path, 'fresh', 'keys', 'operator'));
  expect(statSync(key.privateKeyPath).mode & 0o777).toBe(0o600);
  expect(statSync(join(tmp.path, 'fresh', 'keys')).mode & 0o777).toBe(0o700);
});

test('pack is deterministic, sorted, owner-free, and round-trips through sign, verify and unpack', async () => {
  const a = await packPackage(pkg, join(tmp.path, 'a.tar'));
  const b = await packPackage(pkg, join(tmp.path, 'b.tar'));
  expect(b.sha256).toBe(a.sha256);
  const entries: Array<{ path: string; uid?: number; mtime?: Date }> = [];
  await tar.t({ file: a.tar, onReadEntry: (e) => entries.push({ path: e.path, uid: e.uid, mtime: e.mtime }) });
  const paths = entries.map((e) => e.path);
  expect(paths[0]).toBe('REPORT.md');
  expect(paths).toContain('experts/expert-03.onnx');
  expect(entries.filter((e) => !e.path.endsWith('/')).every((e) => e.mtime?.toISOString() === '2000-01-01T00:00:00.000Z')).toBe(true);
  expect(entries.every((e) => !e.uid)).toBe(true);
  expect((await readTarManifest(a.tar)).version).toBe('1.0.0');

  const signature = await signPackage(a.tar, await readPrivateKey(join(tmp.path, 'fleet.key')));
  await writeSignature(a.tar, signature);
  expect(await readSignature(`${a.tar}.sig`)).toEqual(signature);
  expect(await verifySignedPackage(a.tar, signature, trusted)).toEqual({ sha256: a.sha256, keyId: signature.keyId });

  const out = join(tmp.path, 'unpacked');
  expect(await unpackPackage(a.tar, out, LIMITS)).toMatchObject({ files: expect.any(Number) });
  expect(readFileSync(join(out, 'experts', 'expert-00.onnx'))).toEqual(readFileSync(join(pkg, 'experts', 'expert-00.onnx')));
});

test("pack leaves the factory's baselines/ out of the fleet tar, and the unpacked package still verifies", async () => {
  const dir = join(tmp.path, 'with-baselines');
  cpSync(BUNDLED, dir, { recursive: true });
  const packed = await packPackage(dir, join(tmp.path, 'with-baselines.tar'));
  const paths: string[] = [];
  await tar.t({ file: packed.tar, onReadEntry: (e) => paths.push(e.path) });
  expect(paths.filter((p) => p.startsWith('baselines'))).toEqual([]);
  expect(packed.leftOut).toEqual(['baselines']);
  expect(packed.entries).toBe(paths.length);
  const withoutBaselines = await packPackage(copyPackage(join(tmp.path, 'without-baselines')), join(tmp.path, 'without-baselines.tar'));
  expect(withoutBaselines).toMatchObject({ sha256: packed.sha256, leftOut: [] }); // the same bytes: nothing else differs

  await writeSignature(packed.tar, await signPackage(packed.tar, await readPrivateKey(join(tmp.path, 'fleet.key'))));
  expect((await verifySignedTar(packed.tar, join(tmp.path, 'fleet.pub'), { threads: { intraOp: 1 } })).ok).toBe(true);
});

test('pack refuses a package directory that holds a link', async () => {
  const dir = copyPackage(join(tmp.path, 'with-link'));
  symlinkSync('/etc/hostname', join(dir, 'samples', 'link.png'));
  await expect(packPackage(dir, join(tmp.path, 'link.tar'))).rejects.toMatchObject({ code: 'E_PACK_ENTRY' });
});

test('verify PKG.tar: exit-worthy failures for a tampered tar and for another key, success otherwise', async () => {
  const tarPath = join(tmp.path, 'v.tar');
  await packPackage(pkg, tarPath);
  await writeSignature(tarPath, await signPackage(tarPath, await readPrivateKey(join(tmp.path, 'fleet.key'))));
  const good = await verifySignedTar(tarPath, join(tmp.path, 'fleet.pub'), { threads: { intraOp: 1 } });
  expect(good.checks.map((c) => [c.name, c.ok])).toEqual([['signature', true], ['manifest', true], ['sha256', true], ['shapes', true], ['selftest', true]]);
  expect(good.ok).toBe(true);

  await generateSigningKey(join(tmp.path, 'other'));
  const other = await verifySignedTar(tarPath, join(tmp.path, 'other.pub'));
  expect(other).toMatchObject({ ok: false, checks: [{ name: 'signature', code: 'E_SIGNATURE_UNKNOWN_KEY' }] });

  const bytes = readFileSync(tarPath);
  bytes[bytes.length >> 1] ^= 0x01;
  writeFileSync(tarPath, bytes);
  const tampered = await verifySignedTar(tarPath, join(tmp.path, 'fleet.pub'));
  expect(tampered).toMatchObject({ ok: false, checks: [{ name: 'signature', code: 'E_HASH_MISMATCH' }] });
});

describe('unpack refuses unsafe tars as a whole and writes nothing outside', () => {
  const src = join(tmp.path, 'evil-src');
  beforeAll(() => {
    mkdirSync(join(src, 'inner'), { recursive: true });
    writeFileSync(join(src, 'inner', 'ok.txt'), 'ok');
    writeFileSync(join(src, 'escape.txt'), 'outside');
    symlinkSync('/etc/passwd', join(src, 'inner', 'link'));
  });

  test.each([
    ['a ".." entry', ['ok.txt', '../escape.txt'], /".." segment/],
    ['an absolute entry', ['ok.txt', join(src, 'escape.txt')], /absolute path/],
    ['a symlink entry', ['ok.txt', 'link'], /SymbolicLink to "\/etc\/passwd"/],
  ])('%s', async (_what, entries, message) => {
    const file = join(tmp.path, `evil-${entries[1].replace(/\W/g, '')}.tar`);
    await tar.c({ cwd: join(src, 'inner'), file, preservePaths: true }, entries);
    const dest = join(tmp.path, 'dest', 'staging');
    await expect(unpackPackage(file, dest, LIMITS)).rejects.toMatchObject({ code: 'E_UNPACK_UNSAFE', message: expect.stringMatching(message) });
    expect(existsSync(join(dest, 'ok.txt'))).toBe(false);
    expect(existsSync(join(tmp.path, 'dest', 'escape.txt'))).toBe(false);
  });

  test.each([
    ['gnu', /is a SparseFile/],
    ['pax', /sparse file in PAX form/],
  ])('a sparse file (GNU tar --sparse, %s format) refuses the whole package, which node-tar alone would skip silently', async (format, message) => {
    const dir = join(tmp.path, `sparse-${format}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'ok.txt'), 'ok');
    // Mostly a hole: GNU tar stores it as a sparse entry.
    writeFileSync(join(dir, 'hole.bin'), '');
    truncateSync(join(dir, 'hole.bin'), 1 << 20);
    const file = join(tmp.path, `sparse-${format}.tar`);
    execFileSync('tar', ['--sparse', `--format=${format}`, '-cf', file, '-C', dir, 'ok.txt', 'hole.bin']);
    const dest = join(tmp.path, `sparse-${format}-out`);
    await expect(unpackPackage(file, dest, LIMITS)).rejects.toMatchObject({ code: 'E_UNPACK_UNSAFE', message: expect.stringMatching(message) });
    expect(existsSync(join(dest, 'ok.txt'))).toBe(false);
  });

  test('size and file-count limits', async () => {
    const file = join(tmp.path, 'many.tar');
    await tar.c({ cwd: join(src, 'inner'), file }, ['ok.txt']);
    await expect(unpackPackage(file, join(tmp.path, 'x'), { maxBytes: 1, maxFiles: 10 })).rejects.toMatchObject({ code: 'E_UNPACK_LIMIT' });
    await expect(unpackPackage(file, join(tmp.path, 'x'), { maxBytes: 100, maxFiles: 0 })).rejects.toMatchObject({ code: 'E_UNPACK_LIMIT' });
    // Empty folders count as entries: a tar of thousands of them cannot exhaust the device's inodes.
    const folders = join(tmp.path, 'folders');
    for (let i = 0; i < 20; i++) mkdirSync(join(folders, `d${i}`), { recursive: true });
    const dirs = join(tmp.path, 'dirs.tar');
    await tar.c({ cwd: folders, file: dirs }, Array.from({ length: 20 }, (_, i) => `d${i}`));
    await expect(unpackPackage(dirs, join(tmp.path, 'z'), { maxBytes: 100, maxFiles: 10 })).rejects.toMatchObject({ code: 'E_UNPACK_LIMIT' });
  });

  test('modes in the tar are not applied: no setuid file comes out of a package', async () => {
    const dir = join(tmp.path, 'modes');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(dir, 'run.sh'), 0o4755);
    const file = join(tmp.path, 'modes.tar');
    await tar.c({ cwd: dir, file }, ['run.sh']);
    await unpackPackage(file, join(tmp.path, 'modes-out'), LIMITS);
    expect(statSync(join(tmp.path, 'modes-out', 'run.sh')).mode & 0o4000).toBe(0);
  });

  test('a file that is not a tar', async () => {
    writeFileSync(join(tmp.path, 'junk.tar'), 'not a tar at all'.repeat(100));
    await expect(unpackPackage(join(tmp.path, 'junk.tar'), join(tmp.path, 'y'), LIMITS)).rejects.toMatchObject({ code: 'E_UNPACK_INVALID' });
  });
});

test('versions order as semver: numeric parts, pre-releases before their release', () => {
  expect(compareVersions('1.10.0', '1.9.9')).toBeGreaterThan(0);
  expect(compareVersions('1.0.0', '1.0.0+build.5')).toBe(0);
  expect(compareVersions('1.0.0-rc.2', '1.0.0')).toBeLessThan(0);
  expect(compareVersions('1.0.0-rc.10', '1.0.0-rc.2')).toBeGreaterThan(0);
  expect(compareVersions('1.0.0-alpha', '1.0.0-1')).toBeGreaterThan(0);
  expect(() => compareVersions('1.0', '1.0.0')).toThrow(expect.objectContaining({ code: 'E_VERSION_INVALID' }));
});
