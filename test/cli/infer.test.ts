import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { auditStats } from '../../src/audit/query';
import { loadSelftest } from '../../src/model/selftest';
import { sgmoe } from '../helpers/cli';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('sgmoe infer', () => {
  it('decides sample PNGs exactly as PyTorch did, rejects bad files with their reason, keeps order, exits 2', async () => {
    const selftest = await loadSelftest(join(BUNDLED, 'selftest.json'));
    const cases = selftest.cases.filter((c) => c.sample).slice(0, 6);
    const text = join(tmp.path, 'notes.jpg');
    const empty = join(tmp.path, 'empty.png');
    writeFileSync(text, 'this is not a picture');
    writeFileSync(empty, '');
    const files = [...cases.map((c) => join(BUNDLED, c.sample!)), text, empty, join(tmp.path, 'missing.png')];
    const db = join(tmp.path, 'audit.db');

    const run = sgmoe('infer', '--model', BUNDLED, '--audit', db, '--batch', '4', ...files);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.file)).toEqual(files);
    cases.forEach((c, i) => {
      expect(lines[i]).toMatchObject({ status: 'ok', labelIndex: c.decision.label, expert: c.decision.expert, earlyExit: c.decision.earlyExit });
      expect(lines[i].score).toBeCloseTo(c.decision.score, 4);
    });
    expect(lines.slice(-3).map((l) => [l.status, l.error.code])).toEqual([
      ['rejected', 'E_FRAME_FORMAT'],
      ['rejected', 'E_FRAME_EMPTY'],
      ['rejected', 'E_FRAME_READ'],
    ]);
    expect(run.status).toBe(2);

    const audit = openAuditDbReadOnly(db);
    try {
      expect(auditStats(audit, {}).byStatus).toEqual({ ok: cases.length, rejected: 3, dropped: 0 });
    } finally {
      audit.close();
    }
  });

  it('exits 0 when every file was decided, and honours --threshold', () => {
    const sample = join(BUNDLED, 'samples', '0000-ankle-boot.png');
    const run = sgmoe('infer', '--model', BUNDLED, '--threshold', '0', sample);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: 'ok', earlyExit: true, expert: null });
  });

  it('exits 1 on a usage error and on a model that cannot load', () => {
    expect(sgmoe('infer', 'x.png').status).toBe(1);
    const run = sgmoe('infer', '--model', join(tmp.path, 'nowhere'), 'x.png');
    expect(run.stderr).toMatch(/E_PART_MISSING: cannot read sgmoe-package\/1 manifest .*manifest.json/);
    expect(run.status).toBe(1);
  });
});
