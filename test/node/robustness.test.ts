import Database from 'better-sqlite3';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { queryDecisions } from '../../src/audit/query';
import { join } from 'node:path';
import sharp from 'sharp';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard } from '../../src/node/dashboard';
import { rawRequest } from '../helpers/http';
import { waitUntil } from '../helpers/mqtt';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { BEARING, SAMPLES, SAMPLE_NAMES, hotFolder, recordings, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => process.off('unhandledRejection', onUnhandled));

describe('the node keeps its accounts whatever goes wrong around it', () => {
  it('a corrupt frame that fails while a large one before it is still decoding is rejected in turn, and nothing is unhandled', async () => {
    const camera = new PushSource('camera');
    const created = await createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1 }), { extraSources: [{ source: camera, preprocess: {} }] });
    const decided: string[] = [];
    const rejected: Array<[string, string]> = [];
    created.node.on('decision', (frame) => decided.push(frame.id));
    created.node.on('rejected', (frame, err) => rejected.push([frame.id, err.code]));
    const running = created.node.run();

    const large = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#777' } }).jpeg().toBuffer();
    for (let i = 0; i < 3; i++) {
      await camera.push({ id: `large-${i}`, bytes: large });
      await camera.push({ id: `corrupt-${i}`, bytes: Buffer.from('\x89PNG\r\n\x1a\nnot really') });
    }
    camera.end();
    await running;
    await created.node.stop();
    await new Promise((r) => setImmediate(r));

    expect(unhandled).toEqual([]);
    expect(decided).toEqual(['large-0', 'large-1', 'large-2']);
    expect(rejected).toEqual([0, 1, 2].map((i) => [`corrupt-${i}`, expect.stringMatching(/^E_FRAME_/)]));
    expect(created.node.snapshot().totals).toMatchObject({ ingested: 6, decided: 3, rejected: 3, pending: 0 });
  });

  it('a listener that throws changes nothing for the frames: each is decided exactly once', async () => {
    const inbox = hotFolder(join(tmp.path, 'inbox'), 8);
    const node = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit: { file: join(tmp.path, 'audit.db') } });
    node.node.on('decision', () => {
      throw new Error('a careless SDK user');
    });
    await node.node.run();
    await node.node.stop();
    expect(node.decisions).toHaveLength(8);
    expect(node.rejected).toEqual([]);
    expect(node.node.snapshot().totals).toMatchObject({ ingested: 8, decided: 8, rejected: 0 });
  });

  it('an audit log that cannot be opened does not stop the line: frames are decided and counted as unaudited', async () => {
    const inbox = hotFolder(join(tmp.path, 'inbox-2'), 6);
    writeFileSync(join(tmp.path, 'not-a-folder'), 'a file where the audit folder should be');
    const node = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit: { file: join(tmp.path, 'not-a-folder', 'audit.db') } });
    await node.node.run();
    await node.node.stop();
    const snap = node.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 6, decided: 6 });
    expect(snap.unaudited).toBe(6);
    expect(snap.auditUnavailable?.code).toMatch(/^E_AUDIT_|ENOTDIR|EEXIST/);
  });

  it('a file whose writer goes on after a long pause is not moved half-written: it is taken again once stable and decided', async () => {
    const inbox = join(tmp.path, 'inbox-slow');
    mkdirSync(inbox);
    const whole = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));
    writeFileSync(join(inbox, 'slow.png'), whole.subarray(0, 200));
    // stableMs from the config: short, so the pause fools it and the first half is taken.
    const node = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox}`, stableMs: 20, pollMs: 10 }] });
    // The writer resumes while the half-file is being rejected, before the node settles it.
    node.node.once('rejected', () => appendFileSync(join(inbox, 'slow.png'), whole.subarray(200)));
    const decided = new Promise<void>((resolve) => node.node.once('decision', () => resolve()));
    const running = node.node.run();
    await decided;
    await node.node.stop();
    await running;

    expect(node.rejected.map((r) => r.code)).toEqual(['E_FRAME_DECODE']);
    expect(readdirSync(join(inbox, 'rejected'))).toEqual([]);
    expect(readdirSync(join(inbox, 'done'))).toEqual(['slow.png']);
    expect(readFileSync(join(inbox, 'done', 'slow.png')).equals(whole)).toBe(true);
  });

  it('a file whose writer resumes after its half was rejected stays in the inbox meanwhile: the finished file is taken again and decided', async () => {
    const inbox = join(tmp.path, 'inbox-stalled');
    mkdirSync(inbox);
    const whole = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));
    writeFileSync(join(inbox, 'stalled.png'), whole.subarray(0, 200));
    const node = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox}`, stableMs: 20, pollMs: 10, rejectAfterMs: 600_000 }] });
    const rejected = new Promise<void>((resolve) => node.node.once('rejected', () => resolve()));
    const decided = new Promise<void>((resolve) => node.node.once('decision', () => resolve()));
    const running = node.node.run();
    await rejected;
    // The upload resumes after its half was judged (a stall longer than stableMs): the file is still there to finish.
    await waitUntil(() => node.node.snapshot().sources[0].rejected === 1, 10_000, 'the half settled with its source');
    appendFileSync(join(inbox, 'stalled.png'), whole.subarray(200));
    await decided;
    await node.node.stop();
    await running;

    expect(node.rejected.map((r) => r.code)).toEqual(['E_FRAME_DECODE']);
    expect(node.decisions).toHaveLength(1);
    expect(readdirSync(join(inbox, 'rejected'))).toEqual([]);
    expect(readdirSync(join(inbox, 'done'))).toEqual(['stalled.png']);
    expect(readFileSync(join(inbox, 'done', 'stalled.png')).equals(whole)).toBe(true);
  });

  it('a rejected file nobody writes to moves to rejected/ once watched for rejectAfterMs, and at the latest when the node stops', async () => {
    const inbox = hotFolder(join(tmp.path, 'inbox-corrupt'), 1, { corrupt: 'corrupt.png' });
    const watched = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox}`, stableMs: 20, pollMs: 10, rejectAfterMs: 50 }] });
    const running = watched.node.run();
    await waitUntil(() => existsSync(join(inbox, 'rejected', 'corrupt.png')), 10_000, 'the corrupt file in rejected/');
    await watched.node.stop();
    await running;
    expect(readFileSync(join(inbox, 'rejected', 'corrupt.png.reason.txt'), 'utf8')).toMatch(/^E_FRAME_\w+: /);

    const inbox2 = hotFolder(join(tmp.path, 'inbox-corrupt-2'), 1, { corrupt: 'corrupt.png' });
    const stopped = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox2}`, stableMs: 20, pollMs: 10, rejectAfterMs: 600_000 }] });
    const judged = new Promise<void>((resolve) => stopped.node.once('rejected', () => resolve()));
    const running2 = stopped.node.run();
    await judged;
    await waitUntil(() => stopped.node.snapshot().totals.rejected === 1, 10_000, 'the corrupt file settled as rejected');
    expect(existsSync(join(inbox2, 'corrupt.png'))).toBe(true); // watched meanwhile
    await stopped.node.stop();
    await running2;
    expect(readdirSync(join(inbox2, 'rejected')).sort()).toEqual(['corrupt.png', 'corrupt.png.reason.txt']);
  });

  it('a held rejected file its writer deletes is let go: uploaded again whole under its name, it is taken and decided', async () => {
    const inbox = hotFolder(join(tmp.path, 'inbox-reupload'), 0, { corrupt: 'cam.png' });
    const node = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox}`, stableMs: 20, pollMs: 10, rejectAfterMs: 600_000 }] });
    const decided = new Promise<void>((resolve) => node.node.once('decision', () => resolve()));
    const running = node.node.run();
    await waitUntil(() => node.node.snapshot().sources[0].rejected === 1, 10_000, 'the half settled with its source');
    rmSync(join(inbox, 'cam.png')); // the uploader gives up on its half
    copyFileSync(join(SAMPLES, SAMPLE_NAMES[0]), join(inbox, 'cam.png')); // and uploads it again, whole
    await decided;
    await node.node.stop();
    await running;
    expect(node.decisions).toHaveLength(1);
    expect(readdirSync(join(inbox, 'done'))).toEqual(['cam.png']);
    expect(readdirSync(join(inbox, 'rejected'))).toEqual([]);
  });

  it('a rejected file settled after the folder stopped being watched (a stop with frames in flight, or --once) moves at once: none is left to be rejected again', async () => {
    const inbox = join(tmp.path, 'inbox-stop-hold');
    mkdirSync(inbox);
    const big = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 30 } } }).png({ compressionLevel: 0 }).toBuffer();
    writeFileSync(join(inbox, 'a-big.png'), big);
    writeFileSync(join(inbox, 'bad.png'), Buffer.from('\x89PNG\r\n\x1a\n then nothing that decodes'));
    const node = await sampleNode({ once: false, sources: [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }] });
    const running = node.node.run();
    await waitUntil(() => node.node.snapshot().totals.ingested === 2, 10_000, 'both files taken');
    await node.node.stop();
    await running;
    expect(node.node.snapshot().totals).toMatchObject({ ingested: 2, decided: 1, rejected: 1, pending: 0 });
    expect(readdirSync(inbox).filter((f) => f.endsWith('.png'))).toEqual([]);

    const once = hotFolder(join(tmp.path, 'inbox-once-hold'), 0, { corrupt: 'bad.png' });
    const onceNode = await sampleNode({ once: true, sources: [{ uri: `dir:${once}`, stableMs: 1, pollMs: 10, rejectAfterMs: 600_000 }] });
    await onceNode.node.run();
    await onceNode.node.stop();
    expect(readdirSync(once).filter((f) => f.endsWith('.png'))).toEqual([]);
    expect(readdirSync(join(once, 'rejected')).sort()).toEqual(['bad.png', 'bad.png.reason.txt']);
  });

  it('a file a kill left in the hot folder between its audit row and its move is moved to done/ at the next start, not decided twice', async () => {
    const inbox = hotFolder(join(tmp.path, 'leftover'), 3);
    const audit = { file: join(tmp.path, 'leftover-audit', 'audit.db') };
    const first = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit });
    await first.node.run();
    await first.node.stop();
    expect(first.decisions).toHaveLength(3);
    // As a kill right after the commit leaves it: audited and published, still in the inbox (a rename keeps the mtime,
    // so the file's frame id too). Beside it, a new file, and one under a decided file's name with other bytes.
    const [left, renamed] = readdirSync(join(inbox, 'done')).sort();
    renameSync(join(inbox, 'done', left), join(inbox, left));
    copyFileSync(join(SAMPLES, SAMPLE_NAMES[5]), join(inbox, renamed));
    copyFileSync(join(SAMPLES, SAMPLE_NAMES[6]), join(inbox, 'new.png'));
    const second = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit });
    await second.node.run();
    await second.node.stop();
    expect(second.decisions.map((d) => d.frameId.split('@')[0].split('/').pop()).sort()).toEqual(['new.png', renamed].sort());
    expect(second.node.snapshot().totals).toMatchObject({ ingested: 2, decided: 2 });
    expect(second.node.snapshot().sources[0].counters).toEqual({ alreadyDecided: 1 });
    expect(readdirSync(inbox).filter((f) => f.endsWith('.png'))).toEqual([]);
    const db = openAuditDbReadOnly(audit.file);
    try {
      const rows = queryDecisions(db, {}, { limit: 100 });
      expect(rows).toHaveLength(5);
      expect(rows.filter((r) => r.frameId.includes(`/${left}@`))).toHaveLength(1);
    } finally {
      db.close();
    }
  });

  it('a file a kill left in the hot folder while it held it as cut short is not rejected twice at the next start: held again, then moved to rejected/, or decided once its writer finishes it', async () => {
    const audit = { file: join(tmp.path, 'held-audit', 'audit.db') };
    const inboxes = ['held-once', 'held-resumed'].map((name) => hotFolder(join(tmp.path, name), 0, { corrupt: 'cam.png' }));
    // Decided after the held file (names sort after it), more of them than the node's window: its row is no longer
    // among the folder's latest ones at the next start.
    for (let i = 0; i < 60; i++) copyFileSync(join(SAMPLES, SAMPLE_NAMES[i % SAMPLE_NAMES.length]), join(inboxes[0], `z-${String(i).padStart(2, '0')}.png`));
    const first = await sampleNode({ sources: inboxes.map((inbox) => ({ uri: `dir:${inbox}` })), audit });
    await first.node.run();
    await first.node.stop();
    expect(first.rejected.map((r) => r.code)).toEqual(['E_FRAME_FORMAT', 'E_FRAME_FORMAT']);
    // As a kill during the hold leaves it: its rejected row, the file still in the inbox (a rename keeps the mtime, so
    // the frame id too), no reason beside it.
    for (const inbox of inboxes) {
      renameSync(join(inbox, 'rejected', 'cam.png'), join(inbox, 'cam.png'));
      rmSync(join(inbox, 'rejected', 'cam.png.reason.txt'));
    }
    const [once, resumed] = inboxes;

    const second = await sampleNode({ sources: [{ uri: `dir:${once}` }], audit });
    await second.node.run();
    await second.node.stop();
    expect(second.rejected).toEqual([]);
    expect(second.node.snapshot().totals).toMatchObject({ ingested: 0, rejected: 0 });
    expect(second.node.snapshot().sources[0].counters).toEqual({ alreadyRejected: 1 });
    expect(readdirSync(join(once, 'rejected')).sort()).toEqual(['cam.png', 'cam.png.reason.txt']);
    expect(readFileSync(join(once, 'rejected', 'cam.png.reason.txt'), 'utf8')).toMatch(/^E_FRAME_FORMAT: /);

    const third = await sampleNode({ once: false, sources: [{ uri: `dir:${resumed}`, stableMs: 1, pollMs: 10, rejectAfterMs: 600_000 }], audit });
    const running = third.node.run();
    await waitUntil(() => third.node.snapshot().sources[0].counters?.alreadyRejected === 1, 10_000, 'the held file found again');
    copyFileSync(join(SAMPLES, SAMPLE_NAMES[0]), join(resumed, 'cam.png')); // its writer finishes it
    await waitUntil(() => third.decisions.length === 1, 10_000, 'the finished file decided');
    await third.node.stop();
    await running;
    expect(third.rejected).toEqual([]);
    expect(readdirSync(join(resumed, 'done'))).toEqual(['cam.png']);
    const db = openAuditDbReadOnly(audit.file);
    try {
      const rows = queryDecisions(db, {}, { limit: 100 }).map((r) => `${r.frameId.split('/').slice(-2, -1)[0]} ${r.status}`);
      expect(rows.filter((r) => !r.endsWith('ok') || !r.startsWith('held-once')).sort()).toEqual(['held-once rejected', 'held-resumed ok', 'held-resumed rejected']);
    } finally {
      db.close();
    }
  });

  it('a signal recording a kill left in the hot folder while it held it as cut short is not rejected twice at the next start', async () => {
    const inbox = join(tmp.path, 'held-recording');
    const [name] = recordings(inbox, 1);
    const whole = readFileSync(join(inbox, name));
    writeFileSync(join(inbox, name), whole.subarray(0, whole.length / 2)); // its upload stalled half way
    const audit = { file: join(tmp.path, 'held-recording-audit', 'audit.db') };
    const sources = [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }];
    const first = await sampleNode({ model: BEARING, sources, audit });
    await first.node.run();
    await first.node.stop();
    expect(first.rejected).toHaveLength(1);
    // As a kill during the hold leaves it (see above).
    renameSync(join(inbox, 'rejected', name), join(inbox, name));
    rmSync(join(inbox, 'rejected', `${name}.reason.txt`));

    const second = await sampleNode({ model: BEARING, sources, audit });
    await second.node.run();
    await second.node.stop();
    expect(second.rejected).toEqual([]);
    expect(second.node.snapshot().sources[0].counters).toMatchObject({ alreadyRejected: 1 });
    expect(readdirSync(join(inbox, 'rejected')).sort()).toEqual([name, `${name}.reason.txt`]);
    const db = openAuditDbReadOnly(audit.file);
    try {
      expect(queryDecisions(db, {}, { limit: 100 }).map((r) => r.status)).toEqual(['rejected']);
    } finally {
      db.close();
    }
  });

  it('a signal recording a kill left in the hot folder after a window of it was rejected (a NaN) is not put through again: no second row', async () => {
    const inbox = join(tmp.path, 'nan-leftover');
    const [name] = recordings(inbox, 1);
    const bytes = readFileSync(join(inbox, name));
    bytes.writeFloatLE(Number.NaN, bytes.indexOf('data', 12, 'latin1') + 8); // the first sample: window 0 only
    writeFileSync(join(inbox, name), bytes);
    const audit = { file: join(tmp.path, 'nan-leftover-audit', 'audit.db') };
    const sources = [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }];
    const first = await sampleNode({ model: BEARING, sources, audit });
    await first.node.run();
    await first.node.stop();
    expect(first.rejected.map((r) => r.code)).toEqual(['E_SIGNAL_NAN']);
    expect(first.decisions).toHaveLength(2);
    // As a kill after the rows, before the move, leaves it.
    renameSync(join(inbox, 'rejected', name), join(inbox, name));
    rmSync(join(inbox, 'rejected', `${name}.reason.txt`));

    const second = await sampleNode({ model: BEARING, sources, audit });
    await second.node.run();
    await second.node.stop();
    expect([second.rejected, second.decisions]).toEqual([[], []]);
    expect(second.node.snapshot().sources[0].counters).toMatchObject({ alreadyDecided: 2, alreadyRejected: 1 });
    expect(readFileSync(join(inbox, 'rejected', `${name}.reason.txt`), 'utf8')).toMatch(/^E_SIGNAL_NAN: /);
    const db = openAuditDbReadOnly(audit.file);
    try {
      expect(queryDecisions(db, {}, { limit: 100 }).map((r) => r.status).sort()).toEqual(['ok', 'ok', 'rejected']);
    } finally {
      db.close();
    }
  });

  it("a signal recording a kill left in the hot folder after some of its windows' rows: only the windows without a row are decided at the next start", async () => {
    const inbox = join(tmp.path, 'signal-leftover');
    const names = recordings(inbox, 2);
    const audit = { file: join(tmp.path, 'signal-leftover-audit', 'audit.db') };
    const sources = [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }];
    const first = await sampleNode({ model: BEARING, sources, audit });
    await first.node.run();
    await first.node.stop();
    expect(first.decisions).toHaveLength(6);
    // As a kill leaves them: rec-0 after all its windows' rows, rec-1 after two of its three (a rename keeps the
    // mtime, so the windows' ids too).
    for (const name of names) renameSync(join(inbox, 'done', name), join(inbox, name));
    const db = new Database(audit.file);
    expect(db.prepare("DELETE FROM decisions WHERE frame_id LIKE '%/rec-1.wav@%#8192'").run().changes).toBe(1);
    db.close();

    const second = await sampleNode({ model: BEARING, sources, audit });
    await second.node.run();
    await second.node.stop();
    const windowOf = (frameId: string) => frameId.split('/').pop()?.replace(/@\d+/, '');
    expect(second.decisions.map((d) => windowOf(d.frameId))).toEqual(['rec-1.wav#8192']);
    expect(second.node.snapshot().totals).toMatchObject({ ingested: 1, decided: 1, pending: 0 });
    expect(second.node.snapshot().sources[0].counters).toMatchObject({ alreadyDecided: 5 });
    expect(readdirSync(join(inbox, 'done')).sort()).toEqual(names);
    const conn = openAuditDbReadOnly(audit.file);
    try {
      const rows = queryDecisions(conn, {}, { limit: 100 }).map((r) => windowOf(r.frameId));
      expect(rows.sort()).toEqual(names.flatMap((n) => [0, 4096, 8192].map((offset) => `${n}#${offset}`)));
    } finally {
      conn.close();
    }
  });

  it("a release that wrote the audit row before the result: after the upgrade, such a row does not move a leftover file, it is decided again", async () => {
    const inbox = hotFolder(join(tmp.path, 'upgrade'), 2);
    const audit = { file: join(tmp.path, 'upgrade-audit', 'audit.db') };
    const first = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit });
    await first.node.run();
    await first.node.stop();
    // As schema 4 left the file (the row committed even when the outbox had refused the result), then upgraded.
    const db = new Database(audit.file);
    db.exec('DROP TABLE results_first');
    db.pragma('user_version = 4');
    db.close();
    const [left] = readdirSync(join(inbox, 'done')).sort();
    renameSync(join(inbox, 'done', left), join(inbox, left));
    const second = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit });
    await second.node.run();
    await second.node.stop();
    expect(second.decisions.map((d) => d.frameId.split('@')[0].split('/').pop())).toEqual([left]);
    expect(readdirSync(inbox).filter((f) => f.endsWith('.png'))).toEqual([]);
  });

  it('the dashboard answers a request it cannot parse with 400 and keeps serving', async () => {
    const node = await sampleNode({ sources: [] });
    const dashboard = await startDashboard(node.node, { port: 0 });
    try {
      const status = (path: string) => rawRequest(dashboard.url, 'GET', path).then((a) => a.status);
      expect(await status('//[')).toBe(400);
      expect(await status('/api/snapshot')).toBe(200);
      expect(unhandled).toEqual([]);
    } finally {
      await dashboard.close();
      await node.node.stop();
    }
  });
});
