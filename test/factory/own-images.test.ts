import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { expectVerified } from '../helpers/package';
import { ROOT, sgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const PYTHON = '/usr/bin/python3';

/** A folder of RGB, non-square JPEG crops of real photographs, one class per surface (make-image-folder.py). */
function imageFolder(name: string, perClass: number[], bad = false): string {
  const out = join(tmp.path, name);
  const args = [join(ROOT, 'test/factory/make-image-folder.py'), out, '--per-class', perClass.join(','), ...(bad ? ['--bad'] : [])];
  const made = spawnSync(PYTHON, args, { encoding: 'utf8' });
  expect(made.stderr).toBe('');
  expect(made.status).toBe(0);
  return out;
}

function factory(...args: string[]) {
  return spawnSync(PYTHON, [join(ROOT, 'scripts/factory/main.py'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
}

interface SplitRecord {
  root: string;
  test: { file: string; label: number }[];
}

describe('model factory on a folder of own images', () => {
  it('trains RGB non-square JPEGs with an ROI through --quick, and sgmoe infer on the held-out files reproduces its test accuracy', async () => {
    const data = imageFolder('surfaces', [320, 280, 240, 160], true);
    const copied = readdirSync(join(data, 'grass')).sort()[0];
    copyFileSync(join(data, 'grass', copied), join(data, 'grass', `z-copy-${copied}`));
    const out = join(tmp.path, 'surfaces-sgmoe');
    const run = factory('--data', data, '--size', '48x32', '--roi', '6,4,54,36', '--quick', '--out', out);
    expect(run.stderr.slice(-2000) + run.stdout.slice(-2000)).not.toMatch(/Traceback/);
    expect(run.status).toBe(0);
    // What the run left out is said as it runs, not only in REPORT.md.
    expect(run.stdout + run.stderr).toMatch(/2 unreadable file\(s\) skipped: brick\/\S+ \(E_\w+\); brick\/\S+ \(E_\w+\) \(every one with its reason in REPORT.md\)/);
    expect(run.stdout + run.stderr).toContain(`1 duplicate copies left out: grass/z-copy-${copied} (duplicate) (every one with its reason in REPORT.md)`);

    await expectVerified(out);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({
      name: 'surfaces-sgmoe',
      labels: ['brick', 'grass', 'gravel', 'tissue'],
      input: { channels: 3, width: 48, height: 32, colorspace: 'rgb', roi: { x: 6, y: 4, width: 54, height: 36 } },
    });
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.checks[0]).toMatch(/SDK preprocessing parity on all \d+ samples\/ files: max \|diff\| 0 grey level/);

    // The held-out files, decided by the SDK with the manifest's default ROI (no ROI given here).
    const split: SplitRecord = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8'));
    expect(split.test.length).toBeGreaterThanOrEqual(200);
    const infer = sgmoe('infer', '--model', out, ...split.test.map((t) => join(split.root, t.file)));
    expect(infer.status).toBe(0);
    const decisions = infer.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(decisions).toHaveLength(split.test.length);
    const correct = decisions.filter((d, i) => d.labelIndex === split.test[i].label).length;
    const sdkAccuracy = correct / split.test.length;
    expect(Math.abs(sdkAccuracy - report.models.sgmoe.accuracy)).toBeLessThanOrEqual(0.005);
    expect(report.models.sgmoe.accuracy).toBeGreaterThan(0.5); // four classes: chance is 25-32%

    // Bad data and imbalance, as the report tells them.
    expect(report.data.unreadableCount).toBe(2);
    expect(report.data.unreadable.map((u: { file: string; code: string }) => [u.file, u.code])).toEqual([
      ['brick/cut-in-half.jpg', 'E_FRAME_DECODE'],
      ['brick/notes.jpg', 'E_FRAME_FORMAT'],
    ]);
    expect(report.data.imbalance).toMatchObject({ ratio: 2, largest: 'brick', smallest: 'tissue', handling: expect.stringMatching(/class-weighted/) });
    expect(report.statistics.perClass.sgmoe.map((c: { label: string }) => c.label)).toEqual(['brick', 'grass', 'gravel', 'tissue']);
    expect(Object.keys(report.statistics.mcnemar)).toEqual(['sgmoe-vs-base', 'sgmoe-vs-dense', 'sgmoe-vs-random-gate']);
    const markdown = readFileSync(join(out, 'REPORT.md'), 'utf8');
    expect(markdown).toMatch(/Unreadable files skipped: 2/);
    expect(markdown).toContain(`- Duplicate copies left out (identical pixels): 1:\n  - \`grass/z-copy-${copied}\`: duplicate: the same pixels as grass/${copied} (kept)`);
    expect(markdown).toMatch(/Per-class test accuracy/);
  }, 360_000);

  it('skips and counts unreadable files, and reports the class imbalance and its handling', () => {
    const data = imageFolder('uneven', [60, 15], true);
    // A class's images in a folder of their own (a batch) count for the class.
    mkdirSync(join(data, 'grass', 'batch-2'));
    for (const f of readdirSync(join(data, 'grass')).filter((f) => f.endsWith('.jpg') || f.endsWith('.png')).slice(0, 5)) renameSync(join(data, 'grass', f), join(data, 'grass', 'batch-2', f));
    const run = factory('--data', data, '--check-data');
    expect(run.status).toBe(0);
    const facts = JSON.parse(run.stdout);
    expect(facts.classes.map((c: { train: number; val: number; test: number }) => c.train + c.val + c.test)).toEqual([60, 15]);
    expect(facts.unreadableCount).toBe(2);
    expect(facts.classes.map((c: { label: string; unreadable: number }) => [c.label, c.unreadable])).toEqual([
      ['brick', 2],
      ['grass', 0],
    ]);
    expect(facts.imbalance.ratio).toBeGreaterThan(3);
    expect(facts.imbalance.handling).toMatch(/class-weighted losses/);
    expect(facts.input).toMatchObject({ channels: 3, width: 64, height: 44, chosen: { size: true, channels: true } });
  }, 60_000);

  it('leaves out copies of one image (kept once) and images filed under two classes (kept in neither), and says so', () => {
    const data = imageFolder('copies', [20, 20]);
    const [first, second] = readdirSync(join(data, 'brick')).sort();
    copyFileSync(join(data, 'brick', first), join(data, 'brick', `z-copy-${first}`));
    copyFileSync(join(data, 'brick', second), join(data, 'grass', `misfiled-${second}`));
    const facts = JSON.parse(factory('--data', data, '--check-data').stdout);
    expect(facts.duplicates).toEqual([
      { file: `brick/z-copy-${first}`, code: 'duplicate', reason: `the same pixels as brick/${first} (kept)` },
      { file: `brick/${second}`, code: 'conflicting labels', reason: `the same pixels as grass/misfiled-${second} under classes brick, grass: left out of every class` },
      { file: `grass/misfiled-${second}`, code: 'conflicting labels', reason: `the same pixels as brick/${second} under classes brick, grass: left out of every class` },
    ]);
    expect(facts.classes.map((c: { train: number; val: number; test: number }) => c.train + c.val + c.test)).toEqual([19, 20]);
  }, 60_000);

  it('keeps train/ val/ test/ folders as given, and without val/ takes validation out of train/', () => {
    const flat = imageFolder('presplit', [30, 30]);
    const cuts: [string, number, number][] = [['train', 0, 18], ['val', 18, 24], ['test', 24, 30]];
    for (const label of ['brick', 'grass']) {
      const files = readdirSync(join(flat, label)).sort();
      for (const [split, from, to] of cuts) {
        mkdirSync(join(flat, split, label), { recursive: true });
        for (const f of files.slice(from, to)) renameSync(join(flat, label, f), join(flat, split, label, f));
      }
    }
    // A test image copied into train/ would be scored on what the model memorised: the train/ copy is left out.
    const tested = readdirSync(join(flat, 'test', 'brick')).sort()[0];
    copyFileSync(join(flat, 'test', 'brick', tested), join(flat, 'train', 'brick', `copy-${tested}`));
    const given = JSON.parse(factory('--data', flat, '--check-data').stdout);
    expect(given.duplicates).toEqual([{ file: `train/brick/copy-${tested}`, code: 'duplicate', reason: `the same pixels as test/brick/${tested} (kept)` }]);
    expect(given.split).toBe('the train/ val/ test/ folders as given');
    expect(given.classes.map((c: { train: number; val: number; test: number }) => [c.train, c.val, c.test])).toEqual([
      [18, 6, 6],
      [18, 6, 6],
    ]);
    for (const label of ['brick', 'grass']) {
      for (const f of readdirSync(join(flat, 'val', label))) renameSync(join(flat, 'val', label, f), join(flat, 'train', label, f));
    }
    renameSync(join(flat, 'val'), join(tmp.path, 'val-moved-away'));
    const noVal = JSON.parse(factory('--data', flat, '--check-data').stdout);
    expect(noVal.split).toMatch(/no val\/: 20% of train\/ per class/);
    expect(noVal.classes.map((c: { train: number; val: number; test: number }) => [c.train, c.val, c.test])).toEqual([
      [19, 5, 6],
      [19, 5, 6],
    ]);
  }, 60_000);

  it('stops naming the class and its count when there is only one class', () => {
    const run = factory('--data', imageFolder('single', [20]), '--check-data');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/at least 2 class folders expected in .*single.*found 1: "brick" \(20 files\)/);
  }, 60_000);

  it('stops on a split folder without test/ (train/ and val/ would read as two classes) and on a split one too small to train on', () => {
    const data = imageFolder('two-splits', [6, 6]);
    for (const split of ['train', 'val']) {
      for (const label of ['brick', 'grass']) {
        mkdirSync(join(data, split, label), { recursive: true });
        for (const f of readdirSync(join(data, label)).slice(0, split === 'train' ? 2 : 1)) renameSync(join(data, label, f), join(data, split, label, f));
      }
    }
    const noTest = factory('--data', data, '--check-data');
    expect([noTest.status, noTest.stderr]).toEqual([1, expect.stringContaining('a split folder needs train/ and test/ (val/ optional)')]);
    mkdirSync(join(data, 'test'));
    for (const label of ['brick', 'grass']) renameSync(join(data, label), join(data, 'test', label));
    const tiny = factory('--data', data, '--check-data');
    expect([tiny.status, tiny.stderr]).toEqual([1, expect.stringMatching(/class "brick" has \d+ readable images.*at least 10 per class/)]);
  }, 60_000);

  it('chooses RGB when any one image is in colour, and the size from every image (not a sample of them)', async () => {
    const data = imageFolder('one-colour', [150, 150]);
    const files = ['brick', 'grass'].flatMap((c) => readdirSync(join(data, c)).map((f) => join(data, c, f)));
    // Every image gray (and landscape) but the last one: a sample of the first files would see no colour.
    for (const f of files.slice(0, -1)) writeFileSync(f, await sharp(readFileSync(f)).grayscale().resize(60, 30, { fit: 'fill' }).toBuffer());
    const facts = JSON.parse(factory('--data', data, '--check-data').stdout);
    expect(facts.input).toMatchObject({ channels: 3, width: 64, height: 32 });
  }, 60_000);

  it('stops naming the class and the numbers when a class is too small to split', () => {
    const run = factory('--data', imageFolder('tiny-class', [30, 30, 6]), '--check-data');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/class "gravel" has 6 readable images: at least 10 per class are needed/);
  }, 60_000);

  it('refuses, before training, an --out that would replace the data, a folder of other files or a path under a file, and a missing --out; every factory alike', () => {
    const data = imageFolder('guarded', [12, 12]);
    const project = join(tmp.path, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'notes.txt'), 'mine');
    writeFileSync(join(tmp.path, 'a-file'), 'x');
    for (const [args, says] of [
      [['--data', data, '--quick', '--out', data], 'is, holds or lies in the data folder'],
      [['--data', data, '--quick', '--out', join(data, 'pkg')], 'is, holds or lies in the data folder'],
      [['--data', data, '--quick', '--out', project], 'holds files and is no model package'],
      [['--data', data, '--quick', '--out', join(tmp.path, 'a-file', 'pkg')], 'which is a file'],
      [['--data', data, '--quick'], 'the following arguments are required: --out'],
      [['--task', 'anomaly', '--data', data, '--out', project], 'holds files and is no model package'],
      [['--task', 'anomaly', '--data', data], 'the following arguments are required: --out'],
      [['--input', 'signal', '--data', data, '--out', data], 'is, holds or lies in the data folder'],
    ] as const) {
      const run = factory(...args);
      expect([run.status, run.stderr]).toEqual([2, expect.stringContaining(says)]);
    }
    expect(readFileSync(join(project, 'notes.txt'), 'utf8')).toBe('mine');
    expect(readdirSync(data).sort()).toEqual(['brick', 'grass']);
  }, 60_000);
});
