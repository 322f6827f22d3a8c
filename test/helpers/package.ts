import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative, resolve } from 'node:path';
import { verifyPackage, type VerifyReport } from '../../src/engine/verify';
import type { Manifest } from '../../src/model/manifest';

/** The package the factory ships; tests run the real ONNX files in it. */
export const BUNDLED = resolve(__dirname, '..', '..', 'models', 'fashion-sgmoe');

export function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
}

export function writeManifest(dir: string, manifest: Manifest): void {
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

export function sha256Of(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A writable copy of the bundled package (without its baselines) for tests that tamper with it. */
export function copyPackage(dest: string, source = BUNDLED): string {
  cpSync(source, dest, { recursive: true, filter: (src) => !src.includes(`${source}/baselines`) });
  return dest;
}

/** Every file under `dir` by relative path, with its sha256: two folders compare byte for byte. */
export function fileHashes(dir: string): Record<string, string> {
  const entries = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return Object.fromEntries(entries.map((e) => [relative(dir, join(e.parentPath, e.name)), sha256Of(join(e.parentPath, e.name))]).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Verifies a package as `sgmoe model verify` does, on one ONNX Runtime thread, and expects every check to pass. */
export async function expectVerified(dir: string): Promise<VerifyReport> {
  const report = await verifyPackage(dir, { threads: { intraOp: 1, interOp: 1 } });
  expect(report.checks.map((c) => [c.name, c.ok])).toEqual([['manifest', true], ['sha256', true], ['shapes', true], ['selftest', true]]);
  return report;
}
