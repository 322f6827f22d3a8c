import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Preprocessor } from '../../src/ingest';
import { loadSelftest, parseManifest } from '../../src/model';
import { maxAbsDiff } from './images';

const PACKAGE = join(__dirname, '../../models/fashion-sgmoe');

// The package ships with the repository: a missing one is a failure (readFileSync throws), never a skip.
describe('parity with the factory\'s PyTorch preprocessing (models/fashion-sgmoe)', () => {
  test('the tensor of every selftest sample PNG equals the stored PyTorch input within 1e-5', async () => {
    const manifest = parseManifest(JSON.parse(readFileSync(join(PACKAGE, 'manifest.json'), 'utf8')));
    const selftest = await loadSelftest(join(PACKAGE, 'selftest.json'));
    const cases = selftest.cases.filter((c) => c.sample);
    expect(cases.length).toBeGreaterThan(0);
    const pre = new Preprocessor(manifest.input);
    let worst = 0;
    for (const c of cases) {
      const tensor = await pre.toTensor(readFileSync(join(PACKAGE, c.sample as string)));
      expect(tensor).toHaveLength(c.input.length);
      worst = Math.max(worst, maxAbsDiff(tensor, c.input));
    }
    expect(worst).toBeLessThan(1e-5);
    // The same through the batch form.
    const batch = await pre.toBatch(cases.map((c) => readFileSync(join(PACKAGE, c.sample as string))));
    expect(batch.rejected).toEqual([]);
    expect(maxAbsDiff(batch.data, cases.flatMap((c) => c.input))).toBeLessThan(1e-5);
  });
});
