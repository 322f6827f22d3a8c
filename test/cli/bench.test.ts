import { sgmoe } from '../helpers/cli';

describe('sgmoe bench', () => {
  it('names the benchmarks it has when asked for another, and exits 1', () => {
    const run = sgmoe('bench', 'warp-drive');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/E_USAGE: no benchmark "warp-drive": expected one of engine, ingest, audit, transport, pipeline/);
  });
});
