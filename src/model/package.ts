import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SgmoeError } from '../errors';
import { sha256File } from './integrity';
import { PACKAGE_FORMAT, manifestSchema, type Manifest, type PartSpec } from './manifest';
import { readValidated } from '../validate';

/** Names a part in messages and records: trunk, base, gate, expert-00, expert-01, ... */
export type PartName = 'trunk' | 'base' | 'gate' | `expert-${string}`;

export function expertPartName(index: number): PartName {
  return `expert-${String(index).padStart(2, '0')}`;
}

export interface PackagePart {
  name: PartName;
  spec: PartSpec;
  path: string;
  bytes: number;
}

/** A model package directory whose manifest is valid and whose part files exist (and match their sha256). */
export interface ModelPackage {
  dir: string;
  manifest: Manifest;
  trunk: PackagePart;
  base: PackagePart;
  gate: PackagePart;
  experts: PackagePart[];
  /** Absolute path of selftest.json. */
  selftestPath: string;
}

export interface LoadPackageOptions {
  /** Hash every part against the manifest (default true). Off only for callers that just verified the package. */
  verifyHashes?: boolean;
}

export async function loadPackage(dir: string, options: LoadPackageOptions = {}): Promise<ModelPackage> {
  const root = resolve(dir);
  const manifestPath = join(root, 'manifest.json');
  const manifest = await readValidated(manifestPath, manifestSchema, {
    code: 'E_MANIFEST_INVALID',
    missing: 'E_PART_MISSING',
    where: `${PACKAGE_FORMAT} manifest ${manifestPath}`,
  });
  const verifyHashes = options.verifyHashes ?? true;

  const part = async (name: PartName, spec: PartSpec): Promise<PackagePart> => {
    const path = join(root, spec.file);
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) {
      throw new SgmoeError('E_PART_MISSING', `part ${name}: file ${spec.file} is missing from ${root}`, { part: name, file: spec.file });
    }
    if (verifyHashes) {
      const actual = await sha256File(path);
      if (actual !== spec.sha256) {
        throw new SgmoeError(
          'E_HASH_MISMATCH',
          `part ${name}: ${spec.file} has sha256 ${actual}, the manifest expects ${spec.sha256}`,
          { part: name, file: spec.file, expected: spec.sha256, actual },
        );
      }
    }
    return { name, spec, path, bytes: info.size };
  };

  const { parts } = manifest;
  const [trunk, base, gate, ...experts] = await Promise.all([
    part('trunk', parts.trunk),
    part('base', parts.base),
    part('gate', parts.gate),
    ...parts.experts.map((spec, i) => part(expertPartName(i), spec)),
  ]);
  const selftestPath = join(root, manifest.selftest);
  if (!(await stat(selftestPath).catch(() => null))?.isFile()) {
    throw new SgmoeError('E_PART_MISSING', `selftest file ${manifest.selftest} is missing from ${root}`, { part: 'selftest' });
  }
  return { dir: root, manifest, trunk, base, gate, experts, selftestPath };
}
