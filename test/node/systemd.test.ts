/** The systemd files of examples/systemd/ as Debian's systemd reads them (no running systemd is needed for these). */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseNodeConfig } from '../../src/node/config';
import { tempDir } from '../helpers/tmp';

const EXAMPLE = join(__dirname, '..', '..', 'examples', 'systemd');
const tmp = tempDir('sgmoe-systemd-');
afterAll(() => tmp.cleanup());

function run(command: string, ...args: string[]) {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  return r;
}

describe('examples/systemd', () => {
  it('the unit verifies without a warning (a misspelt setting is only a warning: systemd would ignore it)', () => {
    const r = run('systemd-analyze', 'verify', join(EXAMPLE, 'sgmoe.service'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('sysusers and tmpfiles make the user (in group video) and the inbox (2775, its owner) in a fresh root', () => {
    const root = join(tmp.path, 'root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    expect(run('systemd-sysusers', `--root=${root}`, join(EXAMPLE, 'sgmoe.sysusers.conf')).status).toBe(0);
    const passwd = readFileSync(join(root, 'etc', 'passwd'), 'utf8').split('\n').find((l) => l.startsWith('sgmoe:'));
    const [, , uid, gid, , home] = (passwd ?? '').split(':');
    expect(home).toBe('/var/lib/sgmoe');
    expect(readFileSync(join(root, 'etc', 'group'), 'utf8')).toMatch(/^video:x:\d+:sgmoe$/m);

    const created = run('systemd-tmpfiles', `--root=${root}`, '--create', join(EXAMPLE, 'sgmoe.tmpfiles.conf'));
    expect(created.stderr).toBe('');
    const inbox = statSync(join(root, 'srv', 'sgmoe', 'line-1', 'inbox'));
    expect((inbox.mode & 0o7777).toString(8)).toBe('2775');
    expect([inbox.uid, inbox.gid]).toEqual([Number(uid), Number(gid)]);
  });

  it("the unit's config example is a valid node config with absolute paths only", () => {
    const config = parseNodeConfig(parse(readFileSync(join(EXAMPLE, 'node.yaml'), 'utf8')));
    const unit = readFileSync(join(EXAMPLE, 'sgmoe.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=.* run --config \/etc\/sgmoe\/node\.yaml$/m);
    const paths = [config.model, config.audit?.file, config.fleet?.root, ...(config.fleet?.trustedKeys ?? []), ...config.sources.map((s) => s.uri.replace(/^dir:/, ''))];
    expect(paths.every(Boolean)).toBe(true);
    for (const p of paths) expect(p).toMatch(/^\//);
  });
});
