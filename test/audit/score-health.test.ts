import { decidedRecord, RoutingHealth, type HealthAlarm } from '../../src/audit';
import type { AnomalyFields } from '../../src/engine/tasks';
import { decision } from './records';

/** Good-image calibration: half the good scores below 0, 90% below 0.5, 99% below 0.8 (the threshold). */
const QUANTILES = [
  { q: 0.5, score: 0 },
  { q: 0.9, score: 0.5 },
  { q: 0.99, score: 0.8 },
];
const THRESHOLD = 0.8;

/** A decided record of an anomaly package with this final score (anomalous at or above THRESHOLD). */
function scored(i: number, score: number) {
  const anomaly: AnomalyFields['anomaly'] = { score, threshold: THRESHOLD, verdict: score >= THRESHOLD ? 'anomalous' : 'good', grid: [1, 1], map: [score] };
  return decidedRecord({ ...decision(i, i % 2), score, extra: { anomaly } }, { frameId: `f-${i}` }, 1_700_000_000_000 + i);
}

/** Scores as on good images, per 10: 5 at -0.5, 4 at 0.25, 1 at 0.6 (shares below 0 / 0.5 / 0.8: .5 / .9 / 1). */
const calibrated = (i: number) => (i % 10 < 5 ? -0.5 : i % 10 < 9 ? 0.25 : 0.6);

test('score statistics: the share at or above the threshold and the KS distance at the calibration quantiles, windowed and all time', () => {
  const health = new RoutingHealth({ experts: 2, scoreQuantiles: QUANTILES, windowSize: 4 });
  [-1, 0.2, 0.6, 0.9].forEach((s, i) => health.observe(scored(i, s)));
  let { window, allTime } = health.snapshot();
  // Below 0: 1/4 (gap .25); below 0.5: 2/4 (gap .4); below 0.8: 3/4 (gap .24). One of four at or above 0.8.
  expect(window.scores).toEqual({ scored: 4, anomalyRate: 0.25, drift: expect.closeTo(0.4, 12) as number });
  expect(allTime.scores).toEqual(window.scores);

  health.observe(scored(4, 0.1)); // pushes -1 out of the window: below 0 is now 0/4 (gap .5)
  ({ window, allTime } = health.snapshot());
  expect(window.scores).toEqual({ scored: 4, anomalyRate: 0.25, drift: expect.closeTo(0.5, 12) as number });
  // All time, 5 scores: below 0 1/5 (.3), below 0.5 3/5 (.3), below 0.8 4/5 (.19).
  expect(allTime.scores).toEqual({ scored: 5, anomalyRate: 0.2, drift: expect.closeTo(0.3, 12) as number });
});

test('a classification package (no quantiles) has no score statistics; records without scores leave them alone', () => {
  const plain = new RoutingHealth({ experts: 2, windowSize: 4 });
  plain.observe(scored(0, 1));
  expect(plain.snapshot().window.scores).toBeUndefined();
  const health = new RoutingHealth({ experts: 2, scoreQuantiles: QUANTILES, windowSize: 4 });
  health.observe(decidedRecord(decision(0, 1), { frameId: 'f-0' }));
  expect(health.snapshot().window).toMatchObject({ decisions: 1, scores: { scored: 0, anomalyRate: null, drift: null } });
});

test('anomaly_rate and score_drift are raised when crossed and cleared once back inside by the hysteresis, each exactly once', () => {
  const thresholds = { anomalyRate: 0.225, scoreDrift: 0.325, hysteresis: 0.05, minSamples: 50 };
  const health = new RoutingHealth({ experts: 2, scoreQuantiles: QUANTILES, windowSize: 100, thresholds });
  const alarms: Array<[number, HealthAlarm['kind'], HealthAlarm['state'], number]> = [];
  let i = 0;
  health.onAlarm((a) => alarms.push([i, a.kind, a.state, a.value]));
  const feed = (count: number, scoreOf: (i: number) => number) => {
    for (const end = i + count; i < end; i++) health.observe(scored(i, scoreOf(i)));
  };

  feed(100, calibrated); // as calibrated: rate 0, drift .01
  expect(alarms).toEqual([]);
  expect(health.snapshot().window.scores).toEqual({ scored: 100, anomalyRate: 0, drift: expect.closeTo(0.01, 12) as number });

  // Defective parts (score 1.0) replace the oldest good ones, k of them: rate k/100; drift is the gap below 0.8,
  // (k - 1)/100, or below 0.5, k minus the 0.6 scores replaced, whichever is larger.
  feed(40, () => 1);
  expect(alarms).toEqual([
    [122, 'anomaly_rate', 'raised', 0.23], // the 23rd: 0.23 > 0.225
    [133, 'score_drift', 'raised', expect.closeTo(0.33, 12)], // the 34th: 0.99 - 0.66 = 0.33 > 0.325 (the 33rd: 0.32)
  ]);

  // Good parts at 0.25: the 60 older good frames go first, then the anomalous ones, one per frame.
  feed(78, () => 0.25);
  // 22 anomalous frames left: 0.22 is below the bound but not by the hysteresis, so the alarm holds.
  expect(health.snapshot().window.scores?.anomalyRate).toBeCloseTo(0.22, 12);
  expect(health.snapshot().alarms.map((a) => a.kind)).toEqual(['anomaly_rate', 'score_drift']);
  feed(22, () => 0.25);
  // Cleared at 0.17 (<= 0.225 - 0.05), by the 83rd good frame; never raised twice.
  expect(alarms.slice(2)).toEqual([[222, 'anomaly_rate', 'cleared', expect.closeTo(0.17, 12)]]);
  // Every score at 0.25 is no anomaly, but it is not how good parts scored: the drift alarm stays.
  expect(health.snapshot().window.scores).toEqual({ scored: 100, anomalyRate: 0, drift: expect.closeTo(0.5, 12) as number });
  expect(health.snapshot().alarms.map((a) => a.kind)).toEqual(['score_drift']);

  feed(100, calibrated);
  expect(alarms.slice(3).map(([, kind, state]) => [kind, state])).toEqual([['score_drift', 'cleared']]);
  expect(health.snapshot().alarms).toEqual([]);
});

test('a model swap starts the score statistics afresh against the new quantiles (none for a classification package)', () => {
  const health = new RoutingHealth({ experts: 2, scoreQuantiles: QUANTILES, windowSize: 10 });
  health.observe(scored(0, 1));
  health.reset([0.5, 0.5], 2, [{ q: 0.5, score: 2 }]);
  health.observe(scored(1, 1));
  expect(health.snapshot().window.scores).toEqual({ scored: 1, anomalyRate: 1, drift: 0.5 });
  health.reset([0.5, 0.5], 2);
  health.observe(scored(2, 1));
  expect(health.snapshot().window.scores).toBeUndefined();
});
