import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AuditWriter, openAuditDb } from '../../src/audit';
import { auditStats } from '../../src/audit/query';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { WAL_LIMIT_BYTES } from '../../src/audit/wal';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import type { NodeFault } from '../../src/node/faults';
import { Outbox } from '../../src/transport/outbox';
import { decided } from '../audit/records';
import { BUNDLED } from '../helpers/package';
import { tmpfsTests } from '../helpers/tmpfs';
import { SAMPLES, SAMPLE_NAMES } from './sample-node';

// 4 MiB: the two write-ahead logs at SQLite's defaults (about 4 MB each) do not fit, at 1 MiB each they do.
const { disk, onTmpfs } = tmpfsTests('small data disk', 4 * 1024 * 1024, 'sgmoe-wal-size-');

// Each test starts on an empty disk: the node needs the room the other tests' files would take.
afterEach(() => {
  if (!('unavailable' in disk)) for (const name of readdirSync(disk.path)) rmSync(join(disk.path, name), { recursive: true });
});

const walBytes = (db: string) => (existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);

describe('the write-ahead logs on a small data disk (a real 4 MiB tmpfs)', () => {
  onTmpfs('the audit log\'s is cut back to the limit at the next commit after a transaction larger than it', () => {
    if ('unavailable' in disk) return;
    const file = join(disk.path, 'audit.db');
    const { db } = openAuditDb(file);
    const writer = new AuditWriter(db);
    writer.commitNow(Array.from({ length: 6000 }, (_, i) => decided(i, i % 4)));
    expect(walBytes(file)).toBeGreaterThan(WAL_LIMIT_BYTES);
    writer.commitNow([decided(6000, 0)]);
    expect(walBytes(file)).toBeLessThanOrEqual(WAL_LIMIT_BYTES);
    writer.close();
    db.close();
  });

  onTmpfs('the outbox\'s is cut back to the limit at the next commit after a transaction larger than it', () => {
    if ('unavailable' in disk) return;
    const file = join(disk.path, 'outbox.db');
    const outbox = Outbox.open(file, { maxResults: 10_000 });
    const result = { kind: 'result' as const, topic: 'plant/results', payload: 'x'.repeat(400), qos: 1 as const };
    const [row] = outbox.enqueueAll(Array.from({ length: 3000 }, () => result));
    expect(walBytes(file)).toBeGreaterThan(WAL_LIMIT_BYTES);
    outbox.ack([row.seq]);
    expect(walBytes(file)).toBeLessThanOrEqual(WAL_LIMIT_BYTES);
    outbox.close();
  });

  onTmpfs('a node audits 1,200 frames and queues their results with both logs on the disk (at SQLite\'s defaults they fill it), each log within the limit', async () => {
    if ('unavailable' in disk) return;
    const audit = join(disk.path, 'node', 'audit.db');
    const outbox = join(disk.path, 'node', 'outbox.db');
    const camera = new PushSource('camera');
    const config = parseNodeConfig({ model: BUNDLED, threads: 1, audit: { file: audit }, mqtt: { embeddedBroker: { port: 0 }, outbox: { path: outbox } } });
    const { node } = await createEdgeNode(config, { extraSources: [{ source: camera, preprocess: {} }] });
    const faults: NodeFault[] = [];
    node.on('fault', (f) => faults.push(f));
    const running = node.run();
    const png = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));
    let largest = 0;
    for (let i = 0; i < 1200; i++) {
      await camera.push({ id: `f-${i}`, bytes: png });
      largest = Math.max(largest, walBytes(audit), walBytes(outbox));
    }
    camera.end();
    await running;
    const snap = node.snapshot();
    await node.stop();

    expect(faults.map((f) => `${f.code} ${f.state}: ${f.message}`)).toEqual([]);
    expect(snap.totals).toMatchObject({ ingested: 1200, decided: 1200, pending: 0 });
    expect(snap).toMatchObject({ unaudited: 0, unpublished: 0 });
    expect(largest).toBeLessThanOrEqual(WAL_LIMIT_BYTES);
    const conn = openAuditDbReadOnly(audit);
    try {
      expect(auditStats(conn, {}).total).toBe(1200);
    } finally {
      conn.close();
    }
  });
});
