import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyPackage, readManifest, writeManifest } from '../helpers/package';
import type { Manifest } from '../../src/model/manifest';
import { loadSelftest } from '../../src/model/selftest';
import { AuditLog } from '../../src/audit/audit-log';
import { decidedRecord } from '../../src/audit/record';
import type { Engine } from '../../src/engine/engine';
import type { HealthProbe } from '../../src/fleet/host';
import { SerialEngineHost } from './serial-host';

/** A copy of the shipped package at `dest` with its manifest changed by `edit`. */
export function variant(dest: string, edit: (m: Manifest) => void): string {
  copyPackage(dest);
  const manifest = readManifest(dest);
  edit(manifest);
  writeManifest(dest, manifest);
  return dest;
}

/** The shipped package's golden inputs: real Fashion-MNIST images, already normalised. */
export async function goldenInputs(dir: string): Promise<Float32Array[]> {
  const selftest = await loadSelftest(join(dir, 'selftest.json'));
  return selftest.cases.map((c) => Float32Array.from(c.input));
}

/** Changes one golden decision's label in selftest.json, as a package whose outputs do not match would. */
export function breakSelftest(dir: string): void {
  const path = join(dir, 'selftest.json');
  const selftest = JSON.parse(readFileSync(path, 'utf8'));
  const decision = selftest.cases[0].decision;
  decision.label = (decision.label + 1) % 10;
  writeFileSync(path, JSON.stringify(selftest));
}

/** The version of each decided frame in submission order, and the frames that failed. */
export interface StreamLog {
  versions: string[];
  earlyExits: boolean[];
  failures: string[];
}

/**
 * Keeps frames flowing through `infer` (4 in flight at a time) until `stop()`; every frame is accounted for:
 * decided (its model version kept in submission order) or failed.
 */
export function streamFrames(
  infer: (tensor: Float32Array, frameId: string) => Promise<{ model: { version: string }; earlyExit: boolean }>,
  inputs: Float32Array[],
): { log: StreamLog; stop: () => Promise<StreamLog>; submitted: () => number } {
  const log: StreamLog = { versions: [], earlyExits: [], failures: [] };
  let running = true;
  let seq = 0;
  const loop = (async () => {
    while (running) {
      const batch = Array.from({ length: 4 }, () => {
        const n = seq++;
        return infer(inputs[n % inputs.length], `frame-${n}`).then(
          (d) => ({ ok: true as const, version: d.model.version, earlyExit: d.earlyExit }),
          (err: Error) => ({ ok: false as const, error: `frame-${n}: ${err.message}` }),
        );
      });
      for (const r of await Promise.all(batch)) {
        if (r.ok) {
          log.versions.push(r.version);
          log.earlyExits.push(r.earlyExit);
        } else log.failures.push(r.error);
      }
    }
  })();
  return {
    log,
    submitted: () => seq,
    stop: async () => {
      running = false;
      await loop;
      return log;
    },
  };
}

/** Indexes where the version changes between consecutive frames. */
export function versionBoundaries(versions: string[]): number[] {
  return versions.flatMap((v, i) => (i > 0 && v !== versions[i - 1] ? [i] : []));
}

/** A device's audit log and engine host over `engine`: decisions audited, routing health for the health watch. */
export function auditedHost(root: string, engine: Engine): { audit: AuditLog; host: SerialEngineHost; probe: HealthProbe } {
  const audit = AuditLog.open(join(root, 'audit.db'), {
    model: { ...engine.model, experts: engine.manifest.parts.experts.length, expertShare: engine.manifest.calibration.expertShare },
    health: { windowSize: 200, thresholds: { minSamples: 20 } },
  });
  const host = new SerialEngineHost(engine, { onDecision: (d) => audit.record(decidedRecord(d, { frameId: d.frameId })) });
  return { audit, host, probe: { sample: () => ({ ...host.sample(), routing: audit.health().window }) } };
}
