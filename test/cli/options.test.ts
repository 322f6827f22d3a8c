import { sgmoe } from '../helpers/cli';

describe('bad command-line option values', () => {
  it.each([
    [['model', 'publish', 'pkg.tar', '--broker', 'mqtt://127.0.0.1:1', '--site', 's', '--device', 'd', '--window', 'abc'], '--window'],
    [['infer', '--model', 'models/fashion-sgmoe', '--threshold', '1.5', 'x.png'], '--threshold'],
    [['run', '--dashboard', '99999'], '--dashboard'],
  ])('sgmoe %j exits 1 with a usage message naming %s, never an internal error', (args, option) => {
    const r = sgmoe(...args);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(option);
    expect(r.stderr).toMatch(/expected /);
    expect(r.stderr).not.toContain('E_INTERNAL');
  });
});
