import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { verifyPackage } from '../../src/engine/verify';
import { AnomalyTask, thresholdForFalseAlarmRate } from '../../src/engine/tasks';
import { heatmapPng } from '../../src/protocol/heatmap';
import sharp from 'sharp';
import { parseManifest } from '../../src/model/manifest';
import { copyPackage, expectVerified, readManifest, writeManifest } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const MODELS = resolve(__dirname, '..', '..', 'models');
const LINE = join(MODELS, 'fashion-line-anomaly');
const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('anomaly package', () => {
  it.each(['fashion-line-anomaly', 'texture-line-anomaly'])('%s verifies: every part and golden decision of the PyTorch reference reproduced in ONNX Runtime', async (name) => {
    const dir = join(MODELS, name);
    await expectVerified(dir);
    const golden = JSON.parse(readFileSync(join(dir, 'selftest.json'), 'utf8')).cases;
    expect(new Set(golden.map((c: any) => c.decision.label))).toEqual(new Set([0, 1])); // good and anomalous frames
  });

  it('an anomaly package missing its calibration is refused by verify, naming the field', async () => {
    const dir = copyPackage(join(tmp.path, 'no-calibration'), LINE);
    const manifest = readManifest(dir) as any;
    delete manifest.calibration.anomaly;
    writeManifest(dir, manifest);
    const report = await verifyPackage(dir, { threads: { intraOp: 1, interOp: 1 } });
    expect(report.ok).toBe(false);
    expect(report.checks).toEqual([expect.objectContaining({ name: 'manifest', ok: false, code: 'E_MANIFEST_INVALID' })]);
    expect(report.checks[0].detail).toContain('calibration.anomaly');
  });

  it('a false-alarm rate becomes the threshold at that quantile of good scores, refused outside the calibrated range', () => {
    const calibration = parseManifest(readManifest(LINE)).calibration.anomaly!;
    const at = (q: number) => calibration.quantiles.find((p) => p.q === q)!.score;
    expect(thresholdForFalseAlarmRate(calibration, 0.01)).toBeCloseTo(at(0.99), 9);
    const between = thresholdForFalseAlarmRate(calibration, 0.0075); // halfway from q 0.99 to 0.995
    expect(between).toBeCloseTo((at(0.99) + at(0.995)) / 2, 9);
    expect(thresholdForFalseAlarmRate(calibration, 0.005)).toBeGreaterThan(thresholdForFalseAlarmRate(calibration, 0.05));
    expect(() => thresholdForFalseAlarmRate(calibration, 0.0001)).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
  });

  it('a lower false-alarm rate raises the threshold of a running engine and flags a subset of the frames', async () => {
    const engine = await Engine.load(LINE, { threads: { intraOp: 1, interOp: 1 } });
    try {
      const inputs = JSON.parse(readFileSync(join(LINE, 'selftest.json'), 'utf8')).cases.map((c: any) => Float32Array.from(c.input));
      const flagged = async () => (await engine.inferBatch(inputs)).map((d) => d.label === 'anomalous');
      const shipped = await flagged();
      const strict = engine.task.setFalseAlarmRate!(0.002);
      const loose = engine.task.setFalseAlarmRate!(0.05);
      expect(strict).toBeGreaterThan(loose);
      const atLoose = await flagged();
      engine.task.setFalseAlarmRate!(0.002);
      const atStrict = await flagged();
      for (let i = 0; i < inputs.length; i++) {
        if (atStrict[i]) expect(shipped[i]).toBe(true);
        if (shipped[i]) expect(atLoose[i]).toBe(true);
      }
      expect((await engine.inferBatch(inputs))[0].extra).toMatchObject({ anomaly: { threshold: strict } });
    } finally {
      await engine.dispose();
    }
  });
});

describe('a broken model output', () => {
  it('a score or map cell that is no number is flagged and shown brightest, never passed as good', async () => {
    const task = new AnomalyTask(parseManifest(readManifest(LINE)));
    const [rows, cols] = readManifest(LINE).calibration.anomaly!.grid;
    const map = Float32Array.from({ length: rows * cols }, (_, i) => i);
    const verdict = (score: number) => (task.finish({ confidence: score, earlyExit: true, map }, [], []).extra as any).anomaly.verdict;
    expect([verdict(-5), verdict(1e9), verdict(Number.NaN)]).toEqual(['good', 'anomalous', 'anomalous']);

    map[0] = Number.NaN;
    const { data, info } = await sharp(heatmapPng(map, [rows, cols])).raw().toBuffer({ resolveWithObject: true });
    const cell = (i: number) => data[(Math.floor(i / cols) * 8 * info.width + (i % cols) * 8) * info.channels];
    expect([cell(0), cell(1), cell(rows * cols - 1)]).toEqual([255, 0, 255]);
  });
});
