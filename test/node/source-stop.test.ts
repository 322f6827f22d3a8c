/** Sources whose stop hangs or that yield after the node stopped taking their frames: nothing hangs, nothing is lost. */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { auditStats, openAuditDbReadOnly } from '../../src/audit';
import type { EdgeNode } from '../../src/node/edge-node';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startSgmoe } from '../helpers/cli';
import { BUNDLED } from '../helpers/package';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { samplesClip } from '../helpers/video';
import { SAMPLE_NAMES, hotFolder } from './sample-node';

const tmp = tempDir();
/** Pid files of the helpers a hanging decoder leaves behind: ended even when a test fails. */
const helpers: string[] = [];
afterAll(() => {
  for (const pidFile of helpers) if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  tmp.cleanup();
});

type Line = { msg: string; source?: string; code?: string; frameId?: string };
function capture(level: string): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  return { lines, logger: pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Line) }) };
}

/** Resolves at the node's `count`-th decision. */
function decisions(node: EdgeNode, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => node.on('decision', () => ++seen === count && resolve()));
}

/**
 * A device whose decoder is a wrapper that hangs at teardown, as a real ffmpeg wrapper can: it runs ffmpeg, then
 * ignores SIGTERM and leaves a helper holding the decoder's pipes, so its end is never seen (not even after SIGKILL).
 * Returns the profile and the file where the helper's pid is written (the test ends it).
 */
function hangingDecoderDevice(dir: string): { profile: string; helperPid: string } {
  const helperPid = join(dir, 'helper.pid');
  helpers.push(helperPid);
  const wrapper = join(dir, 'decoder.sh');
  writeFileSync(wrapper, `#!/bin/sh\ntrap '' TERM\nffmpeg "$@"\nsleep 600 &\necho $! > ${helperPid}\nwait\n`, { mode: 0o755 });
  const profile = join(dir, 'device.json');
  const cpu = JSON.parse(readFileSync(join(__dirname, '..', '..', 'devices', 'x86_64-cpu.json'), 'utf8'));
  writeFileSync(profile, JSON.stringify({ ...cpu, name: 'hanging-decoder', decoder: { kind: 'ffmpeg', command: wrapper } }));
  return { profile, helperPid };
}

describe('a source whose stop never ends', () => {
  it('is cut off after the bound: the other sources stop, the audit log closes, the locks go, and stop rejects with E_SOURCE_STOP_TIMEOUT naming it', async () => {
    const dir = join(tmp.path, 'hung-decoder');
    mkdirSync(dir, { recursive: true });
    const { profile, helperPid } = hangingDecoderDevice(dir);
    const clip = samplesClip(join(tmp.path, 'samples.mp4'));
    const inbox = hotFolder(join(dir, 'inbox'), 2);
    const file = join(dir, 'data', 'audit.db');
    const config = parseNodeConfig({
      model: BUNDLED,
      device: profile,
      threads: 1,
      sources: [
        { uri: `video:${clip}`, name: 'line-camera', rate: 'fast' },
        { uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 },
      ],
      audit: { file },
    });
    const { logger, lines } = capture('error');
    const { node } = await createEdgeNode(config, { logger, sourceStopMs: 1000 });
    const decided = decisions(node, SAMPLE_NAMES.length + 2);
    const running = node.run();
    await decided;
    await waitUntil(() => existsSync(helperPid) && readFileSync(helperPid, 'utf8').trim() !== '', 10_000, 'the decoder wrapper to hang on');
    await expect(node.stop()).rejects.toMatchObject({ code: 'E_SOURCE_STOP_TIMEOUT', message: expect.stringContaining('source line-camera did not stop within 1.0 s') });
    await running;
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'a source failed to stop', source: 'line-camera', code: 'E_SOURCE_STOP_TIMEOUT' }));
    expect(existsSync(`${file}.lock`)).toBe(false);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(SAMPLE_NAMES.slice(0, 2));
    const db = openAuditDbReadOnly(file);
    try {
      expect(auditStats(db, {}).byStatus).toEqual({ ok: SAMPLE_NAMES.length + 2, rejected: 0, dropped: 0 });
    } finally {
      db.close();
    }
    const next = await createEdgeNode(config);
    await next.node.stop();
  }, 30_000);

  it('ends sgmoe run on SIGTERM with the summary and exit 1 (the 10 s bound), naming the source', async () => {
    const dir = join(tmp.path, 'hung-decoder-cli');
    mkdirSync(dir, { recursive: true });
    const { profile, helperPid } = hangingDecoderDevice(dir);
    const configFile = join(dir, 'node.json');
    writeFileSync(configFile, JSON.stringify({ model: BUNDLED, device: profile, threads: 1, sources: [{ uri: `video:${samplesClip(join(dir, 'samples.mp4'))}`, name: 'line-camera', rate: 'fast' }] }));
    const child = startSgmoe(['run', '--config', configFile]);
    let [stdout, stderr] = ['', ''];
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await waitUntil(() => existsSync(helperPid) && readFileSync(helperPid, 'utf8').trim() !== '', 20_000, 'the decoder wrapper to hang on');
    child.kill('SIGTERM');
    expect(await exited).toBe(1);
    expect(stderr).toMatch(/stop: E_SOURCE_STOP_TIMEOUT: .*source line-camera did not stop within 10\.0 s/);
    expect(stdout).toMatch(new RegExp(`ingested ${SAMPLE_NAMES.length} = decided ${SAMPLE_NAMES.length} `));
  }, 40_000);
});
