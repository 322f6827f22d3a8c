import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { parseWav } from '../../src/ingest/kinds/signal/wav';
import { copyPackage, readManifest, sha256Of, writeManifest } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

/**
 * The unknown-regime flag of models/bearing-sgmoe (trained at 600, 1000, 1800 and 3000 rpm) on fresh recordings of
 * the repo's generator: speeds beyond the trained range, between them, and the trained ones (false flags).
 */
const ROOT = resolve(__dirname, '..', '..');
const PACKAGE = join(ROOT, 'models', 'bearing-sgmoe');
const PYTHON = '/usr/bin/python3';
const ONE_THREAD = { threads: { intraOp: 1, interOp: 1 } };
const tmp = tempDir('sgmoe-regime-');
let engine: Engine;

function python(args: string[]): void {
  const run = spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
  if (run.status !== 0) throw new Error(`python ${args.join(' ')}: ${run.stderr}`);
}

/** Recordings of the generator (2 s each), seeded apart from the package's training data. */
function recordings(name: string, args: string[]): string {
  const out = join(tmp.path, name);
  python([join(ROOT, 'scripts/signals/bearing.py'), '--out', out, '--seconds', '2', '--recordings', '1', '--snr', '5,15', ...args]);
  return out;
}

/** Every window of every WAV under `dir`, cut as the node cuts a file (window and hop of the package). */
function windows(dir: string): Float32Array[] {
  const { window, hop, channels } = readManifest(PACKAGE).input as unknown as { window: number; hop: number; channels: number };
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.wav'))
    .sort()
    .flatMap((f) => {
      const { samples } = parseWav(readFileSync(join(dir, f)), f);
      const out: Float32Array[] = [];
      for (let o = 0; o + window <= samples[0].length; o += hop) {
        const t = new Float32Array(channels * window);
        for (let c = 0; c < channels; c++) t.set(samples[c].subarray(o, o + window), c * window);
        out.push(t);
      }
      return out;
    });
}

async function flaggedShare(model: Engine, dir: string): Promise<number> {
  const decisions = await model.inferBatch(windows(dir));
  return decisions.filter((d) => d.extra?.unknownRegime === true).length / decisions.length;
}

let beyond: string;
let between: string;
let trained: string;

beforeAll(async () => {
  engine = await Engine.load(PACKAGE, ONE_THREAD);
  beyond = recordings('beyond', ['--rpm', '300,4500', '--load', '0.25,1', '--seed', '5']);
  between = recordings('between', ['--rpm', '1350', '--load', '0.25,1', '--seed', '6']);
  trained = recordings('trained', ['--rpm', '600,1000,1800,3000', '--load', '0.25,1', '--seed', '7']);
});

afterAll(async () => {
  await engine.dispose();
  tmp.cleanup();
});

describe('unknown regime (models/bearing-sgmoe)', () => {
  it('flags windows at speeds beyond the trained range, where the gate is confident', async () => {
    expect(await flaggedShare(engine, beyond)).toBeGreaterThanOrEqual(0.9);
  });

  it('flags windows at a speed between the trained ones', async () => {
    expect(await flaggedShare(engine, between)).toBeGreaterThanOrEqual(0.9);
  });

  it('flags windows at trained speeds no more often than the report target for seen regimes (2%)', async () => {
    expect(await flaggedShare(engine, trained)).toBeLessThanOrEqual(0.02);
  });

  it('a package without maxRegimeDistance (gate with gate_logits only) loads and keeps the gate-confidence rule', async () => {
    const dir = copyPackage(join(tmp.path, 'old'), PACKAGE);
    python(['-c', 'import sys, onnx.utils; onnx.utils.extract_model(sys.argv[1], sys.argv[1], ["features"], ["gate_logits"])', join(dir, 'gate.onnx')]);
    const manifest = readManifest(dir) as unknown as { parts: { gate: { sha256: string } }; regimes: { unknown: Record<string, unknown> } };
    manifest.parts.gate.sha256 = sha256Of(join(dir, 'gate.onnx'));
    delete manifest.regimes.unknown.maxRegimeDistance;
    writeManifest(dir, manifest as never);
    const old = await Engine.load(dir, ONE_THREAD);
    try {
      const { minGateConfidence } = manifest.regimes.unknown as { minGateConfidence: number };
      const decisions = await old.inferBatch(windows(beyond));
      for (const d of decisions) {
        expect(d.extra).not.toHaveProperty('regimeDistance');
        expect(d.extra?.unknownRegime).toBe((d.extra?.gateConfidence as number) < minGateConfidence);
      }
    } finally {
      await old.dispose();
    }
  });

  it('a package that sets maxRegimeDistance but whose gate lacks regime_distance is refused at load', async () => {
    const dir = copyPackage(join(tmp.path, 'inconsistent'), PACKAGE);
    python(['-c', 'import sys, onnx.utils; onnx.utils.extract_model(sys.argv[1], sys.argv[1], ["features"], ["gate_logits"])', join(dir, 'gate.onnx')]);
    const manifest = readManifest(dir) as unknown as { parts: { gate: { sha256: string } } };
    manifest.parts.gate.sha256 = sha256Of(join(dir, 'gate.onnx'));
    writeManifest(dir, manifest as never);
    await expect(Engine.load(dir, ONE_THREAD)).rejects.toMatchObject({ code: 'E_SHAPE_MISMATCH', details: { part: 'gate' } });
  });
});
