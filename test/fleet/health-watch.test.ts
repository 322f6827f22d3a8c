import { DEFAULT_HEALTH_WATCH, judgeHealth } from '../../src/fleet/health-watch';
import type { HealthSample } from '../../src/fleet/host';

const sample = (frames: number, anomalous: number | null, errors = 0): HealthSample => ({ frames, errors, anomalous, latencyP99Us: 1000, routing: null });

describe('the health watch of an update', () => {
  it('judges an anomaly package by the share it flags since the swap, once enough frames ran; others by errors only', () => {
    const start = sample(500, 10); // the package before: 2% flagged
    // A package whose threshold flags good parts: 15 of the 100 frames since the swap.
    expect(judgeHealth(start, sample(600, 25), DEFAULT_HEALTH_WATCH)).toBe('anomaly rate 0.150 (15 of 100 frames flagged) above 0.1');
    // The same share over fewer frames than minAnomalyFrames: a run of real defects, not yet a regression.
    expect(judgeHealth(start, sample(590, 24), DEFAULT_HEALTH_WATCH)).toBeNull();
    expect(judgeHealth(start, sample(600, 20), DEFAULT_HEALTH_WATCH)).toBeNull(); // 10%: at the limit, not above
    expect(judgeHealth(start, sample(600, 25), { ...DEFAULT_HEALTH_WATCH, maxAnomalyRate: 0.2 })).toBeNull();
    // From a classification package (nothing flagged before) to an anomaly one.
    expect(judgeHealth(sample(500, null), sample(700, 40), DEFAULT_HEALTH_WATCH)).toBe('anomaly rate 0.200 (40 of 200 frames flagged) above 0.1');
    // Classification packages flag nothing: no anomaly rate to judge.
    expect(judgeHealth(sample(500, null), sample(700, null), DEFAULT_HEALTH_WATCH)).toBeNull();
    expect(judgeHealth(start, sample(600, 10, 5), DEFAULT_HEALTH_WATCH)).toBe('error rate 0.050 (5 of 100 frames) above 0.01');
  });
});
