import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { expectVerified } from '../helpers/package';
import { ROOT } from '../helpers/cli';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/**
 * The model factory's --quick recipe on the real data set (Debian's dataset-fashion-mnist), from scratch, into a
 * temporary folder: the package it writes must load, hold parity with PyTorch in ONNX Runtime, and be far above
 * chance (10 classes: 10%).
 */
describe('model factory --quick', () => {
  it('trains a valid package that the SDK verifies', async () => {
    const out = join(tmp.path, 'quick-sgmoe');
    const run = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--quick', '--out', out], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);

    const report = await expectVerified(out);
    for (const diff of Object.values(report.selftest!.maxAbsDiff)) expect(diff).toBeLessThanOrEqual(1e-4);

    const metrics = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(metrics.models.sgmoe.accuracy).toBeGreaterThan(0.6);
    expect(metrics.models.base.accuracy).toBeGreaterThan(0.6);
  }, 360_000);

  it('Ctrl-C while workers train: one line, no traceback from any process, no worker left, nothing written', async () => {
    const out = join(tmp.path, 'interrupted');
    // Its own process group, as a terminal's foreground job: Ctrl-C signals every process in it.
    const run = spawn('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--quick', '--out', out], { cwd: ROOT, detached: true });
    let stdout = '';
    let stderr = '';
    run.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = once(run, 'exit');
    await new Promise<void>((resolve) =>
      run.stdout.on('data', (chunk) => {
        stdout += chunk;
        if (/\] epoch 1\//.test(stdout)) resolve(); // a worker reported: the pool is busy training
      }),
    );
    process.kill(-run.pid!, 'SIGINT');
    const [code] = await exited;
    expect({ code, stderr: stderr.trim() }).toEqual({ code: 130, stderr: 'stopped (Ctrl-C)' });
    const groupGone = () => {
      try {
        process.kill(-run.pid!, 0);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ESRCH';
      }
    };
    await waitUntil(groupGone, 20_000, 'every process of the factory to end'); // no worker outlives it
    expect(existsSync(out)).toBe(false);
  }, 300_000);

  it('stops with the Debian package to install when the data set is missing, and prints usage on bad flags', () => {
    const missing = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--quick', '--data-dir', join(tmp.path, 'none'), '--out', join(tmp.path, 'x')], {
      encoding: 'utf8',
    });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr + missing.stdout).toMatch(/dataset-fashion-mnist/);
    const bad = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--experts', 'many'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/usage: npm run factory --/);
  });
});
