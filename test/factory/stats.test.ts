import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli';

/** Runs a Python expression against scripts/factory/stats.py and returns its JSON value. */
function stats(expression: string): unknown {
  const code = `import json, sys, torch; sys.path.insert(0, ${JSON.stringify(join(ROOT, 'scripts/factory'))}); import stats; print(json.dumps(${expression}))`;
  const run = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  return JSON.parse(run.stdout);
}

/** Reference values from scipy.stats.binomtest (p-value, and proportion_ci(method='wilson')). */
describe('factory statistics', () => {
  it('McNemar is the exact two-sided binomial test on the discordant pairs (114 fixed vs 99 broken: p = 0.33744)', () => {
    // 114 samples only A gets right, 99 only B, 500 both, 287 neither.
    const result = stats(
      'stats.mcnemar(torch.tensor([True] * 114 + [False] * 99 + [True] * 500 + [False] * 287), ' +
        'torch.tensor([False] * 114 + [True] * 99 + [True] * 500 + [False] * 287))',
    ) as { aOnlyCorrect: number; bOnlyCorrect: number; p: number };
    expect(result.aOnlyCorrect).toBe(114);
    expect(result.bOnlyCorrect).toBe(99);
    expect(result.p).toBeCloseTo(0.3374419437229782, 12);
    expect(stats('stats.binomial_two_sided(3, 15)')).toBeCloseTo(0.03515625, 12);
    expect(stats('stats.binomial_two_sided(0, 0)')).toBe(1);
  });

  it('the Wilson 95% interval matches the reference, also at 0 successes', () => {
    const [low, high] = stats('stats.wilson(9184, 10000)') as number[];
    expect(low).toBeCloseTo(0.9128724734222168, 9);
    expect(high).toBeCloseTo(0.9236061967412011, 9);
    const [zeroLow, zeroHigh] = stats('stats.wilson(0, 10)') as number[];
    expect(zeroLow).toBe(0);
    expect(zeroHigh).toBeCloseTo(0.27753279986288926, 9);
  });
});
