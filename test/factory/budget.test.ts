import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyPackage } from '../../src/engine/verify';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const PYTHON = '/usr/bin/python3';
const CAP = 2_000_000;

function factory(...args: string[]) {
  return spawnSync(PYTHON, [join(ROOT, 'scripts/factory/main.py'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
}

interface Candidate {
  k: number;
  expertEpochs: number;
  valAAccuracy: number;
  balanced: boolean;
}

/** search.RULE applied to the report's table: the candidate the factory had to choose on validation half A. */
function expectedChoice(rows: Candidate[]): [number, number] {
  const balanced = rows.filter((r) => r.balanced);
  const pool = balanced.length ? balanced : rows;
  const best = Math.max(...pool.map((r) => r.valAAccuracy));
  const near = pool.filter((r) => r.valAAccuracy >= best - 0.001 - 1e-9);
  near.sort((a, b) => a.k - b.k || a.expertEpochs - b.expertEpochs);
  return [near[0].k, near[0].expertEpochs];
}

describe('model factory --budget', () => {
  it.each([
    [['--budget', 'abc'], /--budget expects a positive duration/],
    [['--budget', '1m', '--max-macs', '0'], /--max-macs expects a positive integer/],
    [['--budget', '1m', '--device', 'no-such-board'], /--device: no device profile "no-such-board" \(known: .*jetson-orin-nano/],
    [['--max-macs', '5000000'], /--max-macs and --device go with --budget/],
  ])('%j exits 2 with the usage and names the flag', (args, message) => {
    const run = factory(...args, '--out', join(tmp.path, 'never'));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^usage: npm run factory --/);
    expect(run.stderr).toMatch(message);
  }, 60_000);

  it('exits 2 naming --max-macs when no architecture of the ladder fits under it', () => {
    const data = join(tmp.path, 'tiny');
    expect(spawnSync(PYTHON, [join(ROOT, 'test/factory/make-image-folder.py'), data, '--per-class', '12,12'], { encoding: 'utf8' }).status).toBe(0);
    const run = factory('--data', data, '--size', '32x24', '--budget', '1m', '--max-macs', '1000', '--out', join(tmp.path, 'never'));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/error: --max-macs: 1000 MACs is under the smallest architecture of the ladder/);
  }, 60_000);

  it('derives a MACs cap from a device profile by the documented rule', () => {
    const code = 'import json, budget; print(json.dumps(budget.device_cap("jetson-orin-nano")))';
    const run = spawnSync(PYTHON, ['-c', code], { cwd: join(ROOT, 'scripts/factory'), encoding: 'utf8' });
    expect(run.status).toBe(0);
    const [cap, facts] = JSON.parse(run.stdout);
    expect(facts).toMatchObject({ device: 'jetson-orin-nano', frameRate: 30, streams: 8, throughputSource: 'table' });
    expect(cap).toBe(Math.floor(facts.throughputMacsPerSecond / (30 * 8)));
    expect(facts.rule).toMatch(/an estimate/);
  }, 60_000);

  it('fits the architecture under --max-macs, searches K x expert epochs on half A, calibrates on half B, and reports the search and the plan', async () => {
    const data = join(tmp.path, 'surfaces');
    const made = spawnSync(PYTHON, [join(ROOT, 'test/factory/make-image-folder.py'), data, '--per-class', '60,60,60,60'], { encoding: 'utf8' });
    expect(made.status).toBe(0);
    const out = join(tmp.path, 'surfaces-budget');
    const run = factory('--data', data, '--size', '32x24', '--quick', '--budget', '2m', '--max-macs', String(CAP), '--out', out);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);
    // Progress lines: stage, elapsed, estimated time left, best so far.
    expect(run.stdout).toMatch(/\[budget\] stage candidate K=\d+ epochs=\d+ done \| elapsed \d+m\d\ds \| est\. left \d+m\d\ds \| best so far K=\d+/);

    const verified = await verifyPackage(out, { threads: { intraOp: 1 } });
    expect(verified.checks.every((c) => c.ok)).toBe(true);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    const b = report.budget;
    expect(b.budgetSeconds).toBe(120);
    expect(b.cap).toEqual({ source: '--max-macs', capMacs: CAP });
    expect(b.architecture.worstMacs).toBeLessThanOrEqual(CAP);
    expect(report.models.sgmoe.worstMacs).toBeLessThanOrEqual(CAP);

    // The plan keeps at least two K; every candidate run is in the table with its half-A figures and its time.
    const rows: Candidate[] = b.search;
    expect(new Set(b.plan.candidates.map((c: number[]) => c[0])).size).toBeGreaterThanOrEqual(2);
    expect(new Set(rows.map((r) => r.k)).size).toBeGreaterThanOrEqual(2);
    expect(rows.length + b.plan.droppedAtRunTime.length).toBe(b.plan.candidates.length + b.plan.reserveRun.length);
    expect([b.chosen.k, b.chosen.expertEpochs]).toEqual(expectedChoice(rows));
    expect(report.experts).toBe(b.chosen.k);

    // Two disjoint halves; the shipped threshold and weight are half B's, not half A's.
    expect(b.validationHalves.a + b.validationHalves.b).toBe(report.data.classes.reduce((n: number, c: { val: number }) => n + c.val, 0));
    expect(report.routing.earlyExit.threshold).toBe(b.halfB.threshold);
    expect(report.routing.ensemble.baseWeight).toBe(b.halfB.baseWeight);
    const plannedStages = b.plan.stages.map((s: { stage: string }) => s.stage);
    expect(plannedStages[0]).toBe('base + dense');
    expect(plannedStages[plannedStages.length - 1]).toMatch(/^package/);

    const markdown = readFileSync(join(out, 'REPORT.md'), 'utf8');
    expect(markdown).toMatch(/\| K \| expert epochs \| half-A acc \(op\. point\) \|/);
    for (const r of rows) expect(markdown).toMatch(new RegExp(`^\\| ${r.k}( \\(chosen\\))? \\| ${r.expertEpochs} \\| `, 'm'));
    expect(markdown).toMatch(/\| stage \| estimate \| actual \|/);
    expect(markdown).toMatch(/Budget 2 min 00 s, used \d+ min \d\d s: (within it|over by)/);
  }, 360_000);
});
