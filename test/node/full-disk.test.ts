import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { queryDecisions } from '../../src/audit/query';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import type { NodeFault } from '../../src/node/faults';
import mqtt from 'mqtt';
import { waitUntil } from '../helpers/mqtt';
import { BUNDLED } from '../helpers/package';
import { tmpfsTests } from '../helpers/tmpfs';
import { BEARING, SAMPLES, SAMPLE_NAMES, hotFolder, recordings, sampleNode } from './sample-node';

const { tmp, disk, onTmpfs } = tmpfsTests('full-disk', 2 * 1024 * 1024);

/** Resolves with the first fault event that matches. */
function faultEvent(node: { on(e: 'fault', l: (f: NodeFault) => void): unknown }, state: NodeFault['state']): Promise<NodeFault> {
  return new Promise((resolve) => node.on('fault', (f) => f.code === 'E_STORAGE_UNWRITABLE' && f.state === state && resolve(f)));
}

/** The inbox file name of a frame (`name#offset` for a signal window). */
const fileOf = (frameId: string) => basename(frameId).replace(/@\d+/, '');

/** The inbox file names of the frames the audit log has a decided row for. */
function auditedFiles(db: string): string[] {
  const conn = openAuditDbReadOnly(db);
  try {
    return queryDecisions(conn, {}, { limit: 10_000 }).map((r) => fileOf(r.frameId)).sort();
  } finally {
    conn.close();
  }
}

const files = (dir: string, ext = '.png') => (existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith(ext)).sort() : []);

describe('a full disk (a real 2 MB tmpfs holding the audit log and the outbox)', () => {
  onTmpfs('a hot-folder frame is not settled while its commit fails; once space returns every frame is audited and moved to done/', async () => {
    if ('unavailable' in disk) return;
    const inbox = hotFolder(join(tmp, 'inbox'), 20);
    const audit = join(disk.path, 'dir', 'audit.db');
    const node = await sampleNode({
      sources: [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }],
      audit: { file: audit },
      mqtt: { embeddedBroker: { port: 0 }, outbox: { path: join(disk.path, 'dir', 'outbox.db') } },
    });
    const raised = faultEvent(node.node, 'raised');
    const cleared = faultEvent(node.node, 'cleared');
    disk.fill();
    const running = node.node.run();

    const fault = await raised;
    expect(fault.message).toMatch(/E_AUDIT_WRITE|E_OUTBOX_WRITE/);
    // The moment the alarm is up: what is in done/ is audited, the rest is still in the inbox. The inbox is listed
    // first: a file moving meanwhile shows up twice, never nowhere.
    const waiting = files(inbox);
    const done = files(join(inbox, 'done'));
    expect(waiting.length).toBeGreaterThan(0);
    expect([...new Set([...waiting, ...done])].sort()).toEqual(SAMPLE_NAMES.slice(0, 20));
    expect(auditedFiles(audit)).toEqual(expect.arrayContaining(done));
    expect(node.node.snapshot().faults.map((f) => f.code)).toEqual(['E_STORAGE_UNWRITABLE']);

    disk.free();
    await cleared;
    await running;
    await node.node.stop();

    expect(files(join(inbox, 'done'))).toEqual(SAMPLE_NAMES.slice(0, 20));
    expect(files(inbox)).toEqual([]);
    expect(auditedFiles(audit)).toEqual(SAMPLE_NAMES.slice(0, 20));
    const snap = node.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 20, decided: 20, pending: 0 });
    expect(snap).toMatchObject({ unaudited: 0, unpublished: 0, faults: [] });
  });

  onTmpfs('a hot-folder frame whose result the full outbox refused has no audit row; the next start decides it and sends its result, each once', async () => {
    if ('unavailable' in disk) return;
    const inbox = hotFolder(join(tmp, 'refused-inbox'), 5);
    const source = { uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 };
    const audit = { file: join(tmp, 'refused', 'audit.db') };
    // The outbox alone on the full disk: the audit log could take the rows, but a row must mean its result is queued.
    const mqttConfig = { embeddedBroker: { port: 0 }, outbox: { path: join(disk.path, 'refused', 'outbox.db') } };
    const first = await sampleNode({ sources: [source], audit, mqtt: mqttConfig });
    const raised = faultEvent(first.node, 'raised');
    disk.fill();
    const running = first.node.run();
    await raised;
    await waitUntil(() => first.decisions.length === 5, 10_000, 'the five decisions');
    await first.node.stop(); // the held frames stay in the inbox
    await running;
    disk.free();
    expect(files(inbox)).toEqual(SAMPLE_NAMES.slice(0, 5));
    expect(auditedFiles(audit.file)).toEqual([]);

    const second = await sampleNode({ sources: [source], audit, mqtt: mqttConfig });
    if (!second.broker || !second.transport) throw new Error('expected the embedded broker and the transport');
    const operator = await mqtt.connectAsync(second.broker.url);
    const results: string[] = [];
    operator.on('message', (_topic, payload) => results.push(basename(JSON.parse(payload.toString()).frameId.replace(/@\d+$/, ''))));
    await operator.subscribeAsync(second.transport.topics.result, { qos: 1 });
    await second.node.run();
    await waitUntil(() => results.length >= 5, 10_000, 'the five results');
    await operator.endAsync();
    await second.node.stop();
    expect(results.sort()).toEqual(SAMPLE_NAMES.slice(0, 5));
    expect(auditedFiles(audit.file)).toEqual(SAMPLE_NAMES.slice(0, 5));
    expect(files(join(inbox, 'done'))).toEqual(SAMPLE_NAMES.slice(0, 5));
  });

  onTmpfs('the windows of a signal hot folder are held while the full outbox refuses their results: no recording moves, none counted unpublished; once space returns every window is sent and every file moved', async () => {
    if ('unavailable' in disk) return;
    const inbox = join(tmp, 'signal-inbox');
    const names = recordings(inbox, 3);
    const windows = names.flatMap((n) => [0, 4096, 8192].map((offset) => `${n}#${offset}`));
    const auditFile = join(tmp, 'signal', 'audit.db');
    const created = await createEdgeNode(
      parseNodeConfig({
        model: BEARING,
        threads: 1,
        once: true,
        window: windows.length, // every window decided while the disk is full, none waiting to be read
        sources: [{ uri: `dir:${inbox}`, stableMs: 1, pollMs: 10 }],
        audit: { file: auditFile },
        mqtt: { embeddedBroker: { port: 0 }, outbox: { path: join(disk.path, 'signal', 'outbox.db') } },
      }),
    );
    const { node, broker, transport } = created;
    if (!broker || !transport) throw new Error('expected the embedded broker and the transport');
    const operator = await mqtt.connectAsync(broker.url);
    const results: string[] = [];
    operator.on('message', (_topic, payload) => results.push(fileOf(JSON.parse(payload.toString()).frameId)));
    await operator.subscribeAsync(transport.topics.result, { qos: 1 });
    let decided = 0;
    node.on('decision', () => decided++);
    const raised = faultEvent(node, 'raised');
    const cleared = faultEvent(node, 'cleared');
    disk.fill();
    const running = node.run();

    await raised;
    await waitUntil(() => decided === windows.length, 30_000, 'every window decided');
    await sleep(1000); // commits retried meanwhile (250, 500 ms): still refused
    expect(files(inbox, '.wav')).toEqual(names);
    expect(files(join(inbox, 'done'), '.wav')).toEqual([]);
    expect(node.snapshot()).toMatchObject({ totals: { decided: 0, pending: windows.length }, unpublished: 0, unaudited: 0 });
    expect(auditedFiles(auditFile)).toEqual([]); // a held window's row waits for its result to be queued
    expect(results).toEqual([]);

    disk.free();
    await cleared;
    await running;
    await waitUntil(() => results.length >= windows.length, 10_000, 'every window\'s result');
    await operator.endAsync();
    await node.stop();
    expect(results.sort()).toEqual(windows);
    expect(files(join(inbox, 'done'), '.wav')).toEqual(names);
    expect(files(inbox, '.wav')).toEqual([]);
    expect(auditedFiles(auditFile)).toEqual(windows);
    expect(node.snapshot()).toMatchObject({ totals: { ingested: windows.length, decided: windows.length, pending: 0 }, unpublished: 0, unaudited: 0 });
  });

  onTmpfs('frames of a push source are decided on, counted as unaudited, and the disk alarm is raised then cleared on MQTT', async () => {
    if ('unavailable' in disk) return;
    const camera = new PushSource('camera');
    // The audit log on the full disk; the outbox elsewhere, so the alarm can be followed on the broker.
    const config = parseNodeConfig({
      model: BUNDLED,
      threads: 1,
      audit: { file: join(disk.path, 'push', 'audit.db') },
      mqtt: { embeddedBroker: { port: 0 }, outbox: { path: join(tmp, 'push-outbox.db') } },
    });
    const created = await createEdgeNode(config, { extraSources: [{ source: camera, preprocess: {} }] });
    const { broker, transport } = created;
    if (!broker || !transport) throw new Error('expected the embedded broker and the transport');
    const operator = await mqtt.connectAsync(broker.url);
    const alarms: any[] = [];
    const statusFaults: string[] = [];
    operator.on('message', (topic, payload) => {
      const message = JSON.parse(payload.toString());
      if (topic === transport.topics.alarm) alarms.push(message);
      else for (const f of message.info?.faults ?? []) statusFaults.push(f.code);
    });
    await operator.subscribeAsync([transport.topics.alarm, transport.topics.status], { qos: 1 });
    const decided: string[] = [];
    created.node.on('decision', (frame) => decided.push(frame.id));
    const raised = faultEvent(created.node, 'raised');
    const cleared = faultEvent(created.node, 'cleared');
    const running = created.node.run();
    const png = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));

    disk.fill();
    for (let i = 0; i < 5; i++) await camera.push({ id: `full-${i}`, bytes: png });
    await raised;
    disk.free();
    await camera.push({ id: 'after', bytes: png });
    await cleared;
    camera.end();
    await running;
    await waitUntil(() => alarms.length === 2, 10_000, 'the raised and cleared alarms');
    await operator.endAsync();
    await created.node.stop();

    expect(alarms.map((a) => [a.code, a.details.state])).toEqual([
      ['E_STORAGE_UNWRITABLE', 'raised'],
      ['E_STORAGE_UNWRITABLE', 'cleared'],
    ]);
    // The retained status (published directly, not through the outbox) said so while it lasted.
    expect(statusFaults).toContain('E_STORAGE_UNWRITABLE');
    expect(decided).toEqual(['full-0', 'full-1', 'full-2', 'full-3', 'full-4', 'after']);
    const snap = created.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 6, decided: 6, pending: 0 });
    expect(snap.unaudited).toBeGreaterThanOrEqual(1);
    expect(snap.unaudited).toBeLessThanOrEqual(5);
    expect(snap.faults).toEqual([]);
  });
});
