import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { thresholdForFalseAlarmRate } from '../../src/engine/tasks';
import { parseManifest } from '../../src/model/manifest';
import { sgmoe } from '../helpers/cli';
import { BUNDLED, readManifest } from '../helpers/package';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const samples = readdirSync(join(LINE, 'samples'))
  .filter((f) => f.endsWith('.png'))
  .map((f) => join(LINE, 'samples', f));

describe('sgmoe infer on an anomaly package', () => {
  it('--false-alarm-rate sets the threshold from the calibration quantiles; each line carries score, threshold and verdict', () => {
    const run = sgmoe('infer', '--model', LINE, '--false-alarm-rate', '0.005', ...samples);
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(samples.length);
    const threshold = thresholdForFalseAlarmRate(parseManifest(readManifest(LINE)).calibration.anomaly!, 0.005);
    for (const l of lines) {
      expect(l.anomaly.threshold).toBeCloseTo(threshold, 9);
      expect(l.anomaly.verdict).toBe(l.anomaly.score >= threshold ? 'anomalous' : 'good');
      expect(l.label).toBe(l.anomaly.verdict);
    }
  });

  it('--false-alarm-rate on a classification package stops with a message naming the task', () => {
    const run = sgmoe('infer', '--model', BUNDLED, '--false-alarm-rate', '0.01', samples[0]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('expected a package of task anomaly, found task classification');
  });
});
