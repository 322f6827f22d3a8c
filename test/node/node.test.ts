import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { queryDecisions } from '../../src/audit/query';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { ROOT, sgmoe, sgmoeArgs, startSgmoe } from '../helpers/cli';
import { BUNDLED } from '../helpers/package';
import { hotFolder } from './sample-node';
import { tempDir } from '../helpers/tmp';
import { Mosquitto, MosquittoSub, waitUntil } from '../helpers/mqtt';

const tmp = tempDir();
let broker: Mosquitto;

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await broker.start();
});

afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

const samples = readdirSync(join(BUNDLED, 'samples')).filter((f) => f.endsWith('.png'));

/** An independent subscriber (mosquitto_sub), ready once it has seen a probe on its own topic. */
async function readySubscriber(topic: string, probeTopic: string): Promise<MosquittoSub> {
  const sub = new MosquittoSub(broker.port, topic, ['-q', '1']);
  const probe = await mqtt.connectAsync(broker.url);
  try {
    await waitUntil(
      () => {
        void probe.publishAsync(probeTopic, '{"probe":true}');
        return sub.lines.length > 0;
      },
      10_000,
      'mosquitto_sub to subscribe',
    );
  } finally {
    await probe.endAsync();
  }
  return sub;
}

/** The results a subscriber got (the readiness probes left out). */
function results(sub: MosquittoSub): any[] {
  return sub
    .messages()
    .map(([, m]) => m)
    .filter((m) => !m.probe);
}

/**
 * A hot folder of `count` numbered copies of the samples and a node config (device `device` on the test broker) for
 * the CLI: a stream long enough to stop or kill the node in the middle of.
 */
function streamFolder(device: string, count: number, batch: { maxSize: number; maxWaitMs: number }, source: Record<string, unknown>) {
  const dir = join(tmp.path, device);
  const inbox = join(dir, 'inbox');
  mkdirSync(inbox, { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const f = samples[i % samples.length];
    const name = `${String(i).padStart(4, '0')}-${f}`;
    copyFileSync(join(BUNDLED, 'samples', f), join(inbox, name));
    names.push(name);
  }
  const configFile = join(dir, 'node.json');
  const config = { model: BUNDLED, device: 'x86_64-cpu', threads: 1, batch, sources: [{ uri: `dir:${inbox}`, ...source }], mqtt: { url: broker.url, site: 'plant', device }, audit: { file: join(dir, 'audit.db') } };
  writeFileSync(configFile, JSON.stringify(config));
  return { dir, inbox, names, configFile };
}

function auditRows(db: string) {
  const conn = openAuditDbReadOnly(db);
  try {
    return queryDecisions(conn, {}, { limit: 100_000 });
  } finally {
    conn.close();
  }
}

describe('edge node end to end', () => {
  it('hot folder with a corrupt frame -> decisions on MQTT and in the audit log, counts equal, the bad one rejected with its reason, also on MQTT', async () => {
    const dir = join(tmp.path, 'e2e');
    const inbox = join(dir, 'inbox');
    mkdirSync(inbox, { recursive: true });
    const good = samples.slice(0, 20);
    for (const f of good) copyFileSync(join(BUNDLED, 'samples', f), join(inbox, f));
    writeFileSync(join(inbox, 'broken.png'), readFileSync(join(BUNDLED, 'samples', good[0])).subarray(0, 40));

    const sub = await readySubscriber('sgmoe/v1/plant/e2e/result', 'sgmoe/v1/plant/e2e/result');
    const refused = await readySubscriber('sgmoe/v1/plant/e2e/rejected', 'sgmoe/v1/plant/e2e/rejected');
    const config = parseNodeConfig({
      model: BUNDLED,
      device: 'x86_64-cpu',
      threads: 1,
      sources: [{ uri: `dir:${inbox}`, name: 'line-1' }],
      mqtt: { url: broker.url, site: 'plant', device: 'e2e' },
      audit: { file: join(dir, 'audit.db') },
      once: true,
    });
    const { node } = await createEdgeNode(config);
    await node.run();
    await node.stop();

    const snap = node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 21, decided: 20, rejected: 1, dropped: 0, pending: 0 });

    await waitUntil(() => new Set(results(sub).map((m) => m.frameId)).size >= 20, 15_000, 'results on MQTT');
    await sub.stop();
    const published = results(sub);
    const rows = auditRows(join(dir, 'audit.db'));
    const decided = rows.filter((r) => r.status === 'ok');
    expect(new Set(published.map((m) => m.frameId))).toEqual(new Set(decided.map((r) => r.frameId)));
    expect(decided).toHaveLength(20);
    for (const m of published) {
      const row = decided.find((r) => r.frameId === m.frameId)!;
      expect(m).toMatchObject({ label: row.label, expert: row.expert, earlyExit: row.earlyExit, model: { name: 'fashion-sgmoe' } });
    }

    const rejected = rows.filter((r) => r.status === 'rejected');
    expect(rejected).toHaveLength(1);
    expect(rejected[0].frameId).toContain('broken.png');
    expect(rejected[0].errorCode).toMatch(/^E_FRAME_/);
    expect(readdirSync(join(inbox, 'rejected'))).toEqual(expect.arrayContaining(['broken.png', 'broken.png.reason.txt']));
    expect(readFileSync(join(inbox, 'rejected', 'broken.png.reason.txt'), 'utf8')).toContain(rejected[0].errorCode!);
    // The line learns it too: the frame that got no result, and why (every frame has one message or the other).
    await waitUntil(() => results(refused).length >= 1, 15_000, 'the rejection on MQTT');
    await refused.stop();
    expect(results(refused)).toEqual([
      expect.objectContaining({ schema: 'sgmoe.rejected/1', frameId: rejected[0].frameId, source: 'line-1', code: rejected[0].errorCode, model: { name: 'fashion-sgmoe', version: expect.any(String) } }),
    ]);
    expect(results(refused)[0].message).toMatch(/\S/);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual([...good].sort());
  });

  it('SIGTERM in the middle of a stream, then a restart: nothing is missing from the audit log or the broker side', async () => {
    const { dir, inbox, names, configFile } = streamFolder('sigterm', 400, { maxSize: 1, maxWaitMs: 0 }, { name: 'line-2' });
    const sub = await readySubscriber('sgmoe/v1/plant/sigterm/result', 'sgmoe/v1/plant/sigterm/result');

    // First run: stopped with SIGTERM once some frames are done, many still waiting in the folder.
    const first = startSgmoe(['run', '--config', configFile]);
    let stderr = '';
    first.stderr.on('data', (d) => (stderr += d));
    await waitUntil(() => existsSync(join(inbox, 'done')) && readdirSync(join(inbox, 'done')).length >= 30, 60_000, 'first frames done');
    const exited = new Promise<number | null>((r) => first.once('exit', r));
    first.kill('SIGTERM');
    expect(await exited).toBe(0);
    const doneAfterFirst = readdirSync(join(inbox, 'done')).length;
    expect(doneAfterFirst).toBeLessThan(names.length);

    // Second run: --once handles the rest and exits.
    const second = sgmoe('run', '--config', configFile, '--once');
    expect(second.status).toBe(0);

    const rows = auditRows(join(dir, 'audit.db'));
    const frameFiles = rows.map((r) => r.frameId.split('@')[0].split('/').pop());
    expect(rows.every((r) => r.status === 'ok')).toBe(true);
    expect(new Set(frameFiles)).toEqual(new Set(names));
    expect(rows).toHaveLength(names.length);
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual([...names].sort());

    await waitUntil(() => new Set(results(sub).map((m) => m.frameId)).size >= names.length, 30_000, 'every result on MQTT');
    await sub.stop();
    const ids = results(sub).map((m) => m.frameId);
    expect(new Set(ids)).toEqual(new Set(rows.map((r) => r.frameId)));
    expect(stderr).toMatch(/SIGTERM: finishing the frames in flight/);
  });

  it('kill -9 twice in the middle of a stream, then a restart: every frame has one audit row and a result, none is left', async () => {
    const { dir, inbox, names, configFile } = streamFolder('sigkill', 300, { maxSize: 4, maxWaitMs: 1 }, { name: 'line-3', stableMs: 1, pollMs: 10 });
    const sub = await readySubscriber('sgmoe/v1/plant/sigkill/result', 'sgmoe/v1/plant/sigkill/result');
    const done = () => (existsSync(join(inbox, 'done')) ? readdirSync(join(inbox, 'done')).length : 0);

    // Killed twice while frames are in flight (a frame may be between its audit row and its move to done/).
    for (const after of [40, 120]) {
      const run = startSgmoe(['run', '--config', configFile]);
      await waitUntil(() => done() >= after, 60_000, `${after} frames done`);
      const exited = new Promise<NodeJS.Signals | null>((r) => run.once('exit', (_code, signal) => r(signal)));
      run.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
    }
    expect(done()).toBeLessThan(names.length);
    const last = sgmoe('run', '--config', configFile, '--once');
    expect(last.status).toBe(0);
    // Results are at least once: one sent before a kill that came before its audit row is sent again.
    try {
      await waitUntil(() => new Set(results(sub).map((m) => m.frameId)).size >= names.length, 30_000, 'every result on MQTT');
    } finally {
      await sub.stop();
    }

    const rows = auditRows(join(dir, 'audit.db'));
    const frameFiles = rows.map((r) => r.frameId.split('@')[0].split('/').pop());
    expect(rows.every((r) => r.status === 'ok')).toBe(true);
    expect([...frameFiles].sort()).toEqual([...names].sort()); // each once
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual([...names].sort());
    expect(new Set(results(sub).map((m) => m.frameId))).toEqual(new Set(rows.map((r) => r.frameId)));
  });

  it('SIGHUP (a closed terminal, a dropped SSH session) stops it as SIGTERM does: exit 0, the summary printed, every frame taken audited', async () => {
    const dir = join(tmp.path, 'sighup');
    const inbox = hotFolder(join(dir, 'inbox'), 12);
    const configFile = join(dir, 'node.json');
    writeFileSync(configFile, JSON.stringify({ model: BUNDLED, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}` }], audit: { file: join(dir, 'audit.db') } }));
    const node = startSgmoe(['run', '--config', configFile]);
    let [stdout, stderr] = ['', ''];
    node.stdout.on('data', (d) => (stdout += d));
    node.stderr.on('data', (d) => (stderr += d));
    await waitUntil(() => existsSync(join(inbox, 'done')) && readdirSync(join(inbox, 'done')).length === 12, 60_000, 'the folder handled');
    const exited = new Promise<number | null>((r) => node.once('exit', r));
    node.kill('SIGHUP');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGHUP: finishing the frames in flight/);
    expect(stdout).toMatch(/ingested 12 = decided 12 /);
    expect(auditRows(join(dir, 'audit.db'))).toHaveLength(12);
  });

  it('started by npm (npx sgmoe run, npm start), it stops as on SIGTERM when npm goes: npm does not pass the signal on', async () => {
    const dir = join(tmp.path, 'npm-parent');
    const inbox = hotFolder(join(dir, 'inbox'), 12);
    const configFile = join(dir, 'node.json');
    writeFileSync(configFile, JSON.stringify({ model: BUNDLED, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}` }], audit: { file: join(dir, 'audit.db') } }));
    const [outFile, errFile] = [join(dir, 'out.log'), join(dir, 'err.log')];
    // npm's place: a process that starts the node with npm's environment and prints its pid, killed as npm is.
    const launcher = `const { openSync } = require('node:fs');
      const child = require('node:child_process').spawn(process.execPath, ${JSON.stringify(sgmoeArgs('run', '--config', configFile))},
        { cwd: ${JSON.stringify(ROOT)}, stdio: ['ignore', openSync(${JSON.stringify(outFile)}, 'w'), openSync(${JSON.stringify(errFile)}, 'w')] });
      console.log(child.pid);
      setInterval(() => {}, 1000);`;
    const npm = spawn(process.execPath, ['-e', launcher], { env: { ...process.env, npm_command: 'exec' }, stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = Number(await new Promise<string>((r) => npm.stdout.once('data', (d: Buffer) => r(d.toString()))));
    const running = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      await waitUntil(() => existsSync(join(inbox, 'done')) && readdirSync(join(inbox, 'done')).length === 12, 60_000, 'the folder handled');
      npm.kill('SIGKILL');
      // Its summary is the last thing it writes. (Not its pid gone: under a PID 1 that reaps no orphans it stays a zombie.)
      await waitUntil(() => /ingested \d+ = decided/.test(readFileSync(outFile, 'utf8')), 30_000, 'the node stopped');
      expect(readFileSync(errFile, 'utf8')).toMatch(/the npm process that started the node has gone .*: finishing the frames in flight/);
      expect(readFileSync(outFile, 'utf8')).toMatch(/ingested 12 = decided 12 /);
      expect(auditRows(join(dir, 'audit.db'))).toHaveLength(12);
    } finally {
      npm.kill('SIGKILL');
      if (running()) process.kill(pid, 'SIGKILL');
    }
  });
});

describe('the demo', () => {
  it('exits 1 naming the source when its only source fails (a folder that is not there), 0 when it ran', () => {
    const missing = join(tmp.path, 'no-such-inbox');
    const failed = sgmoe('run', '--once', '--source', `dir:${missing}`);
    expect(failed.stderr).toMatch(new RegExp(`source \\S+ failed: E_SOURCE_NOT_FOUND: .*${missing}`));
    // The summary (and the snapshot behind it) says what went wrong with the source, not only that it erred.
    expect(failed.stdout).toMatch(/ingested 0, decided 0, rejected 0, dropped 0; last error E_SOURCE_NOT_FOUND at \d{4}-/);
    expect(failed.status).toBe(1);
    const inbox = join(tmp.path, 'empty-inbox');
    mkdirSync(inbox);
    expect(sgmoe('run', '--once', '--source', `dir:${inbox}`).status).toBe(0);
  });

  it('a node whose stdout reader has gone (| logger that died) goes on deciding, and stops cleanly on SIGTERM', async () => {
    const inbox = join(tmp.path, 'closed-stdout');
    mkdirSync(inbox);
    const child = startSgmoe(['run', '--source', `dir:${inbox}`]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.stdout.destroy();
    // Frames after the reader left: each one's stdout line meets the closed pipe.
    hotFolder(inbox, 3, { corrupt: 'z-corrupt.png' });
    await waitUntil(() => existsSync(join(inbox, 'rejected')) && readdirSync(join(inbox, 'done')).length === 3 && readdirSync(join(inbox, 'rejected')).length === 2, 60_000, 'every file settled');
    expect(child.exitCode).toBeNull();
    child.kill('SIGTERM');
    const status = await new Promise((resolve) => child.on('close', resolve));
    expect(status).toBe(0);
    expect(stderr).not.toContain('EPIPE');
  });

  it('--once with a source that has no end (a camera, a stream) says so at start instead of looking hung', async () => {
    const inbox = join(tmp.path, 'once-endless');
    mkdirSync(inbox);
    const child = startSgmoe(['run', '--once', '--source', `dir:${inbox}`, '--source', 'http://127.0.0.1:9/snapshot.jpg']);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    await waitUntil(() => stderr.includes('--once: source'), 60_000, 'the --once notice');
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('close', resolve));
    expect(stderr).toContain('--once: source http://127.0.0.1:9/snapshot.jpg has no end (only dir: and video: sources do): the node runs until stopped (Ctrl-C)');
    expect(stderr).not.toContain(`--once: source dir:`);
  });

  it('runs with --once and its summary adds up', () => {
    const cwd = join(tmp.path, 'demo');
    mkdirSync(cwd);
    const run = sgmoe('run', '--demo', '--once', '--fps', '0', '--audit', join(cwd, 'audit.db'));
    expect(run.status).toBe(0);
    const n = samples.length;
    expect(run.stdout).toContain(`ingested ${n} = decided ${n} + rejected 0 + dropped 0 + pending 0`);
    const accuracy = /accuracy +([\d.]+)% \((\d+) of (\d+) labelled frames\)/.exec(run.stdout);
    expect(accuracy).not.toBeNull();
    expect(Number(accuracy![3])).toBe(n);
    expect(Number(accuracy![1])).toBeGreaterThan(50);
    expect(run.stdout).toContain('the samples were picked to exercise the early exit and every expert, not to measure accuracy');
    const testAccuracy = JSON.parse(readFileSync(join(BUNDLED, 'report.json'), 'utf8')).models.sgmoe.accuracy;
    expect(run.stdout).toContain(`the package's test accuracy: ${(testAccuracy * 100).toFixed(1)}% (its report.json)`);
    expect(run.stdout).toMatch(/threshold +[\d.]+ \(early exit\)/);
    // Both labelled spans, with the same figures each (no swap here: the same counts).
    expect(run.stdout).toMatch(new RegExp(`since start \\(since .*\\)\n  decided +${n}, early exit \\d+\\.\\d%`));
    expect(run.stdout).toMatch(new RegExp(`since the current model \\(fashion-sgmoe 1\\.0\\.0, since .*\\)\n  decided +${n}, early exit \\d+\\.\\d%`));
    expect(run.stdout).toMatch(/latency +p50 [\d.]+ ms, p99 [\d.]+ ms/);
    expect(run.stdout.split('\n').filter((l) => /\.png +\S/.test(l))).toHaveLength(n);
    // stderr is a pipe here: the logs are JSON lines.
    const logs = run.stderr.split('\n').filter((l) => l.startsWith('{'));
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.map((l) => JSON.parse(l).msg)).toContain('engine loaded');
  });

  it('plays a signal package\'s sample recordings too (windowed as a hot folder would), and refuses an unknown log level by name', () => {
    const cwd = join(tmp.path, 'demo-signal');
    mkdirSync(cwd);
    const run = sgmoe('run', '--demo', '--once', '--fps', '0', '--model', join(ROOT, 'models', 'bearing-sgmoe'), '--audit', join(cwd, 'audit.db'));
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/ingested (\d+) = decided \1 \+ rejected 0 \+ dropped 0 \+ pending 0/);
    expect(run.stdout).not.toContain('ingested 0 ');
    const level = spawnSync(process.execPath, sgmoeArgs('run', '--demo', '--once', '--audit', join(cwd, 'level.db')), { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SGMOE_LOG_LEVEL: 'verbose' } });
    expect(level.status).toBe(1);
    expect(level.stderr).toBe('sgmoe: E_USAGE: SGMOE_LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, silent, found "verbose"\n');
  });

  it('logs short human lines, not JSON, with --log-format pretty (what a terminal gets)', () => {
    const cwd = join(tmp.path, 'demo-pretty');
    mkdirSync(cwd);
    const run = sgmoe('run', '--demo', '--once', '--fps', '0', '--audit', join(cwd, 'audit.db'), '--log-format', 'pretty');
    expect(run.status).toBe(0);
    const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines.some((l) => l.startsWith('{'))).toBe(false);
    expect(lines).toContainEqual(expect.stringMatching(/^\[\d\d:\d\d:\d\d\] INFO: engine loaded /));
  });
});
