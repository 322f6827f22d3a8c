import { spawnSync } from 'node:child_process';
import { cpSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, sgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

describe('sgmoe bench', () => {
  it('names the benchmarks it has when asked for another, and exits 1', () => {
    const run = sgmoe('bench', 'warp-drive');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/E_USAGE: no benchmark "warp-drive": expected one of engine, ingest, audit, transport, pipeline, signal, anomaly$/m);
  });

  it('says plainly that it needs a source checkout when run from an installed package, and exits 1', () => {
    const tmp = tempDir('sgmoe-installed-');
    try {
      // What npm installs: package.json's "files" (built dist/, scripts/ ...) and the runtime dependencies, no src/.
      const pkg = join(tmp.path, 'sgmoe-edge');
      for (const entry of ['package.json', 'dist', 'scripts']) cpSync(join(ROOT, entry), join(pkg, entry), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
      const run = spawnSync(process.execPath, [join(pkg, 'dist', 'cli', 'main.js'), 'bench', 'transport'], { encoding: 'utf8' });
      expect(run.status).toBe(1);
      expect(run.stderr).toMatch(/E_BENCH_NEEDS_SOURCE: the benchmarks run from a source checkout of sgmoe-edge, not from an installed package/);
    } finally {
      tmp.cleanup();
    }
  });
});
