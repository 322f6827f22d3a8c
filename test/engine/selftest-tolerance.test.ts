import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compareOutputs } from '../../src/engine/selftest-run';
import { verifyPackage } from '../../src/engine/verify';
import { copyPackage } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const ONE_THREAD = { threads: { intraOp: 1, interOp: 1 } };
const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('self-test tolerance: absolute plus relative, as numpy.allclose', () => {
  const tolerance = { absolute: 1e-3, relative: 1e-5 };

  it('a score of 6.8e4 may differ by what float32 holds there, a small one only by the absolute part', () => {
    // The trial's expert score: ONNX Runtime 1.59e-2 away from PyTorch at 6.76e4 (2.4e-7 of it).
    expect(compareOutputs([67_600.016], [67_600], tolerance).outside).toBeUndefined();
    expect(compareOutputs([0.5016], [0.5], tolerance).outside).toMatchObject({ index: 0, expected: 0.5 });
    // Absolute only (packages built before relativeTolerance): the large score fails, as it did.
    expect(compareOutputs([67_600.016], [67_600], { absolute: 1e-3, relative: 0 }).outside).toBeDefined();
  });

  it('a wrong output still fails at any magnitude: 1e-4 of a large value, 2x the absolute part near zero, NaN, another length', () => {
    expect(compareOutputs([1, 67_600 * (1 + 1e-4)], [1, 67_600], tolerance).outside).toMatchObject({ index: 1 });
    expect(compareOutputs([0, 2e-3], [0, 0], tolerance).outside).toMatchObject({ index: 1 });
    expect(compareOutputs([NaN], [1], tolerance).outside).toMatchObject({ index: 0 });
    expect(compareOutputs([1, 2], [1], tolerance).outside).toMatchObject({ index: -1 });
  });

  it('verify fails a package whose golden expert score is moved by 2e-3 or whose map is off by 1%, naming case, part and tolerance', async () => {
    const dir = copyPackage(join(tmp.path, 'perturbed'), LINE);
    const file = join(dir, 'selftest.json');
    const selftest = JSON.parse(readFileSync(file, 'utf8'));
    selftest.relativeTolerance = 1e-5;
    writeFileSync(file, JSON.stringify(selftest));
    expect((await verifyPackage(dir, ONE_THREAD)).ok).toBe(true);

    selftest.cases[0].outputs.experts[1].score[0] += 2e-3;
    selftest.cases[1].outputs.experts[2].map = selftest.cases[1].outputs.experts[2].map.map((v: number) => v * 1.01);
    writeFileSync(file, JSON.stringify(selftest));
    const report = await verifyPackage(dir, ONE_THREAD);
    expect(report.ok).toBe(false);
    expect(report.selftest!.failures.map((f) => [f.caseId, f.check])).toEqual([
      ['case-00', 'expert 1 score'],
      ['case-01', 'expert 2 map'],
    ]);
    expect(report.selftest!.failures[0].message).toMatch(/differs from PyTorch by 2\.\d+e-3, where PyTorch gives .* \(tolerance 0\.001 \+ 0\.00001 x \|PyTorch\|\)/);
  });
});

describe('self-test tolerance bounds', () => {
  it('a package whose tolerance was raised until anything passes is refused as a bad package, not verified', async () => {
    for (const [field, value] of [['relativeTolerance', 1], ['tolerance', 0.5]] as const) {
      const dir = copyPackage(join(tmp.path, `loose-${field}`), LINE);
      const file = join(dir, 'selftest.json');
      const selftest = JSON.parse(readFileSync(file, 'utf8'));
      selftest[field] = value;
      // With it, a part that gives only zeros would pass: each score lies within 1 x itself of 0.
      for (const c of selftest.cases) c.outputs.experts[0].score = c.outputs.experts[0].score.map(() => 0);
      writeFileSync(file, JSON.stringify(selftest));
      const report = await verifyPackage(dir, ONE_THREAD);
      expect(report.ok).toBe(false);
      expect(report.checks.find((c) => c.name === 'selftest')).toMatchObject({ ok: false, code: 'E_SELFTEST_INVALID', detail: expect.stringContaining(`${field}: Too big`) });
    }
  });
});
