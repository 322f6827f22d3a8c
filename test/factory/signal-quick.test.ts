import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { expectVerified } from '../helpers/package';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-signal-factory-');
afterAll(() => tmp.cleanup());

const PYTHON = '/usr/bin/python3';

function python(args: string[]) {
  return spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', timeout: 240_000 });
}

function generate(data: string, args: string[]) {
  const made = python([join(ROOT, 'scripts/signals/bearing.py'), '--out', data, ...args]);
  expect(made.stderr).toBe('');
  expect(made.status).toBe(0);
}

function factory(args: string[]) {
  return python([join(ROOT, 'scripts/factory/main.py'), '--input', 'signal', ...args]);
}

/**
 * The signal factory's --quick recipe end to end on a small generated data set: two seen speeds and a held-out
 * one from scripts/signals/bearing.py, into a package that the SDK verifies (manifest, sha256, shapes, and parity
 * of every part with PyTorch in ONNX Runtime). Far above chance (4 classes: 25%), with the regime report filled in.
 */
describe('signal factory --quick', () => {
  it('trains a condition package on generated recordings that verifyPackage passes', async () => {
    const data = join(tmp.path, 'bearing');
    generate(data, ['--rpm', '600,1800', '--load', '1', '--recordings', '8', '--snr', '10,20']);
    generate(data, ['--rpm', '1200', '--load', '1', '--recordings', '2', '--snr', '10,20', '--seed', '1']);

    const out = join(tmp.path, 'bearing-quick');
    const run = factory(['--data', data, '--holdout-rpm', '1200', '--experts', '2', '--quick', '--out', out]);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);

    const verified = await expectVerified(out);
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

    // The console's verdict says what REPORT.md says: test accuracy and every measured target missed.
    expect(run.stdout).toContain(`[factory] test accuracy ${(100 * report.splits.test.sgmoe.accuracy).toFixed(2)}%, held-out speed`);
    const unmet = Object.keys(report.reached).filter((key) => !report.reached[key] && report.measured[key] !== null);
    expect(run.stdout.match(/\[factory\] target not reached: /g) ?? []).toHaveLength(unmet.length);
    expect(run.stdout).not.toMatch(/warning: the validation split/);
    expect(run.stdout).toMatch(/\[factory\] QUICK build \(.*\): not for use/);
  }, 300_000);

  it('refuses an envelope band above half the sample rate with a message that names --band', () => {
    const data = join(tmp.path, 'bearing');
    const run = factory(['--data', data, '--band', '2000,13000', '--quick', '--out', join(tmp.path, 'x')]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/--band: .*12800 Hz/);
  });

  it('splits recordings without regime tags into train/val/test, reports the build as run and warns of a tiny validation split', () => {
    const data = join(tmp.path, 'untagged');
    generate(data, ['--rpm', '1800', '--load', '1', '--recordings', '4']);
    for (const label of ['ball', 'healthy', 'inner', 'outer']) {
      readdirSync(join(data, label)).forEach((name, i) => renameSync(join(data, label, name), join(data, label, `rec-${i}.wav`)));
    }
    const out = join(tmp.path, 'untagged-quick');
    const args = ['--data', data, '--experts', '2', '--quick', '--band', '1500,5000', '--out', out];
    const run = factory(args);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);

    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.windows).toEqual({ train: 40, val: 20, test: 20, heldout: 0 });
    expect(run.stdout).toMatch(/\[factory\] warning: the validation split holds 4 recordings \(1 of ball\): .* too few/);
    expect(report.splits.test.perRegime).toBeUndefined();
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.name).toBe(basename(out));
    expect(manifest.regimes.experts.map((e: { speedRpm: string | null }) => e.speedRpm)).toEqual([null, null]);
    const markdown = readFileSync(join(out, 'REPORT.md'), 'utf8');
    expect(markdown).toContain(`Built by \`npm run factory -- --input signal ${args.join(' ')}\``);
    expect(markdown).toContain(`| gate | top gate probability < ${manifest.regimes.unknown.minGateConfidence} (manifest`);
    expect(markdown).toMatch(/held-out speed ≥ 0.9 \| — \| not measured \|/);
  }, 120_000);

  it('trains, checks and packages single-channel (mono WAV) recordings, a one-axis accelerometer', async () => {
    const data = join(tmp.path, 'mono');
    generate(data, ['--rpm', '1800', '--load', '1', '--recordings', '4']);
    const mono = python(['-c', [
      'import glob, sys', 'from scipy.io import wavfile',
      "for p in glob.glob(sys.argv[1] + '/*/*.wav'):", '    rate, x = wavfile.read(p); wavfile.write(p, rate, x[:, 0])',
    ].join('\n'), data]);
    expect(mono.stderr).toBe('');
    writeFileSync(join(data, 'inner', 'rec.npy'), 'not a recording');

    const out = join(tmp.path, 'mono-quick');
    const run = factory(['--data', data, '--experts', '2', '--quick', '--band', '1500,5000', '--out', out]);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/x 1 channels/);
    expect(run.stdout).toMatch(/1 unsupported file\(s\) skipped: inner\/rec\.npy \(not a \.wav or \.csv file\)/);

    await expectVerified(out);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.input).toMatchObject({ kind: 'signal', channels: 1, sampleRate: 25600 });
  }, 120_000);

  it('stops on a missing folder, a truncated WAV, a NaN sample or a recording at another rate with one error line naming the file', () => {
    const data = join(tmp.path, 'small');
    generate(data, ['--rpm', '1800', '--load', '1', '--recordings', '1', '--classes', 'healthy,outer', '--seconds', '0.5']);
    const expectError = (folder: string, message: RegExp) => {
      const run = factory(['--data', folder, '--quick', '--out', join(tmp.path, 'never')]);
      expect(run.status).toBe(1);
      expect(run.stderr).not.toMatch(/Traceback/);
      expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(message)]);
    };
    expectError(join(tmp.path, 'absent'), /^error: .*absent: no such folder$/);

    const wav = (folder: string) => join(folder, 'outer', readdirSync(join(folder, 'outer'))[0]);
    const truncated = join(tmp.path, 'truncated');
    cpSync(data, truncated, { recursive: true });
    truncateSync(wav(truncated), 20_001);
    expectError(truncated, /^error: .*truncated\/outer\/.*\.wav: truncated: expected \d+ bytes as its header says, found 20001$/);

    const nan = join(tmp.path, 'nan');
    cpSync(data, nan, { recursive: true });
    const bytes = readFileSync(wav(nan));
    bytes.writeFloatLE(NaN, bytes.indexOf('data') + 8 + 4 * (3 * 1234 + 2)); // sample 1234 of channel 2 (3 channels)
    writeFileSync(wav(nan), bytes);
    expectError(nan, /^error: .*nan\/outer\/.*\.wav: expected finite samples, found nan at sample 1234 of channel 2$/);

    // The odd recording sorts first: the message must name it, and a good file as the reference, not the other way round.
    const odd = join(tmp.path, 'odd');
    cpSync(data, odd, { recursive: true });
    const resampled = python(['-c', [
      'import sys', 'from scipy.io import wavfile',
      'rate, x = wavfile.read(sys.argv[1]); wavfile.write(sys.argv[2], 48000, x)',
    ].join('\n'), wav(odd), join(odd, 'healthy', '0-odd.wav')]);
    expect(resampled.stderr).toBe('');
    expectError(odd, new RegExp('^error: .*odd: expected every recording at one sample rate and channel count, 25600 Hz and 3 channels ' +
      'as 2 of the 3 have \\(e\\.g\\. healthy/rpm.*\\.wav\\), found 48000 Hz and 3 channels in healthy/0-odd\\.wav$'));
  }, 60_000);
});
