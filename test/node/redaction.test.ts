import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { redact, redactText } from '../../src/redact';
import { sgmoeAsync } from '../helpers/cli';
import { Mosquitto } from '../helpers/mqtt';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-redaction-');
afterAll(() => tmp.cleanup());

test.each([
  ['mqtt://line3:s3cret@broker:1883', 'mqtt://***@broker:1883'],
  ['mjpeg+http://viewer:p@ss@cam-7/stream', 'mjpeg+http://***@cam-7/stream'],
  ['download of https://token@repo/pkg.tar failed', 'download of https://***@repo/pkg.tar failed'],
  ['http://repo/a@b.tar (an @ in the path is no userinfo)', 'http://repo/a@b.tar (an @ in the path is no userinfo)'],
  ['dir:/srv/in', 'dir:/srv/in'],
])('redactText(%j) masks the userinfo of every URL in it', (text, expected) => {
  expect(redactText(text)).toBe(expected);
});

test('redact masks URL userinfo in every string of a value, and password-like fields whole', () => {
  const config = { mqtt: { url: 'mqtts://u:pw@b', password: 'pw', port: 1 }, sources: [{ uri: 'http://a:b@c/' }], name: null };
  expect(redact(config)).toEqual({ mqtt: { url: 'mqtts://***@b', password: '***', port: 1 }, sources: [{ uri: 'http://***@c/' }], name: null });
  expect(config.mqtt.password).toBe('pw');
});

test('`sgmoe run` logs its broker URL without the credentials written into it', async () => {
  const broker = await Mosquitto.create(tmp.path);
  await broker.start();
  try {
    mkdirSync(join(tmp.path, 'inbox'));
    const config = join(tmp.path, 'node.json');
    writeFileSync(
      config,
      JSON.stringify({
        model: BUNDLED,
        device: 'x86_64-cpu',
        threads: 1,
        sources: [{ uri: `dir:${join(tmp.path, 'inbox')}` }],
        mqtt: { url: broker.url.replace('mqtt://', 'mqtt://line3:s3cret@'), site: 'plant', device: 'cell-1' },
        audit: { file: join(tmp.path, 'audit.db') },
      }),
    );
    const run = await sgmoeAsync('run', '--config', config, '--once');
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('connected to the broker');
    expect(run.stderr).toContain('mqtt://***@127.0.0.1');
    expect(run.stderr + run.stdout).not.toContain('s3cret');
  } finally {
    await broker.stop();
  }
});
