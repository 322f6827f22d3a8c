import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyPackage } from '../../src/engine/verify';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-signal-factory-');
afterAll(() => tmp.cleanup());

const PYTHON = '/usr/bin/python3';

function python(args: string[]) {
  return spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
}

/**
 * The signal factory's --quick recipe end to end on a small generated data set: two seen speeds and a held-out
 * one from scripts/signals/bearing.py, into a package that the SDK verifies (manifest, sha256, shapes, and parity
 * of every part with PyTorch in ONNX Runtime). Far above chance (4 classes: 25%), with the regime report filled in.
 */
describe('signal factory --quick', () => {
  it('trains a condition package on generated recordings that verifyPackage passes', async () => {
    const data = join(tmp.path, 'bearing');
    const gen = join(ROOT, 'scripts/signals/bearing.py');
    for (const args of [
      ['--out', data, '--rpm', '600,1800', '--load', '1', '--recordings', '8', '--snr', '10,20'],
      ['--out', data, '--rpm', '1200', '--load', '1', '--recordings', '2', '--snr', '10,20', '--seed', '1'],
    ]) {
      const made = python([gen, ...args]);
      expect(made.stderr).toBe('');
      expect(made.status).toBe(0);
    }

    const out = join(tmp.path, 'bearing-quick');
    const run = python([join(ROOT, 'scripts/factory/main.py'), '--input', 'signal', '--data', data, '--holdout-rpm', '1200', '--experts', '2', '--quick', '--out', out]);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);

    const verified = await verifyPackage(out, { threads: { intraOp: 1 } });
    expect(verified.checks.map((c) => [c.name, c.ok])).toEqual([
      ['manifest', true],
      ['sha256', true],
      ['shapes', true],
      ['selftest', true],
    ]);
    for (const diff of Object.values(verified.selftest!.maxAbsDiff)) expect(diff).toBeLessThanOrEqual(1e-4);

    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({
      task: 'condition',
      labels: ['ball', 'healthy', 'inner', 'outer'],
      input: { kind: 'signal', channels: 3, sampleRate: 25600, window: 8192, hop: 4096 },
    });
    expect(manifest.parts.experts).toHaveLength(2);

    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.quick).toBe(true);
    expect(report.windows.heldout).toBe(40);
    expect(report.splits.test.sgmoe.accuracy).toBeGreaterThan(0.6);
    expect(report.purity.test.map((p: { windows: number }) => p.windows).reduce((a: number, b: number) => a + b, 0)).toBe(report.windows.test);
  }, 300_000);

  it('refuses an envelope band above half the sample rate with a message that names --band', () => {
    const data = join(tmp.path, 'bearing');
    const run = python([join(ROOT, 'scripts/factory/main.py'), '--input', 'signal', '--data', data, '--band', '2000,13000', '--quick', '--out', join(tmp.path, 'x')]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/--band: .*12800 Hz/);
  });
});
