import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import pino from 'pino';
import { Engine } from '../../src/engine/engine';
import { join } from 'node:path';
import { sgmoe } from '../helpers/cli';
import { BUNDLED, copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('sgmoe model verify / inspect', () => {
  it('verifies the bundled package: exit 0 and every check listed', () => {
    const run = sgmoe('model', 'verify', BUNDLED);
    expect(run.stdout).toMatch(/ok\s+manifest[\s\S]*ok\s+sha256[\s\S]*ok\s+shapes[\s\S]*ok\s+selftest .*every decision identical/);
    expect(run.status).toBe(0);
  });

  it('warns, beside a pass, that a quick build is no model for a line; the node says so at every load', async () => {
    expect(sgmoe('model', 'verify', BUNDLED).stdout).not.toContain('warning');
    const dir = copyPackage(join(tmp.path, 'quick'));
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    writeFileSync(join(dir, 'report.json'), JSON.stringify({ ...report, mode: 'quick' }));
    const run = sgmoe('model', 'verify', dir);
    expect(run.stdout).toMatch(/warning: fashion-sgmoe \S+ is a quick build \(factory --quick\): .* train it without --quick\n.*: verified/);
    expect(run.status).toBe(0);
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const engine = await Engine.load(dir, { threads: { intraOp: 1 }, warmup: false, logger });
    await engine.dispose();
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual([expect.stringMatching(/^the package is a quick build/)]);
  });

  it('exits 2 naming the part and the check that failed', () => {
    const dir = copyPackage(join(tmp.path, 'tampered'));
    copyFileSync(join(dir, 'base.onnx'), join(dir, 'gate.onnx'));
    const run = sgmoe('model', 'verify', dir);
    expect(run.stdout).toMatch(/FAIL sha256 +E_HASH_MISMATCH part gate: gate.onnx has sha256 [0-9a-f]{64}, the manifest expects/);
    expect(run.status).toBe(2);
  });

  it('exits 1 with usage on a missing argument', () => {
    const run = sgmoe('model', 'verify');
    expect(run.stderr).toMatch(/missing required argument 'dir'/);
    expect(run.status).toBe(1);
  });

  it('inspect says an anomaly package\'s early exit and its anomaly threshold in words', () => {
    const run = sgmoe('model', 'inspect', join(BUNDLED, '..', 'texture-line-anomaly'));
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('routing topK 1, no early exit (the expert always runs), base weight 0.25');
    expect(run.stdout).toMatch(/anomaly threshold [\d.]+ for a false-alarm rate of 0\.01 \(set on \d+ held-out good images\)/);
  });

  it('inspect shows the parts with their MACs and the calibration curve', () => {
    const run = sgmoe('model', 'inspect', BUNDLED, '--json');
    expect(run.status).toBe(0);
    const info = JSON.parse(run.stdout);
    const experts = info.manifest.parts.experts.map((_: unknown, i: number) => `expert-${String(i).padStart(2, '0')}`);
    expect(info.parts.map((p: { part: string }) => p.part)).toEqual(['trunk', 'base', 'gate', ...experts]);
    expect(info.parts.every((p: { macs: number; provider: string }) => p.macs > 0 && p.provider === 'cpu')).toBe(true);
  });
});
