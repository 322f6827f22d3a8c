import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, readdirSync, renameSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { listEvents } from '../../src/audit/query';
import { finalSummary } from '../../src/node/summary';
import { Outbox } from '../../src/transport/outbox';
import mqtt from 'mqtt';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { hotFolder, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/**
 * A real outbox left with queued results, then cut short (a kill mid-write, a bad sector): the node must not stop.
 * It moves the file aside, decides every frame through a fresh outbox, and says how many results may be lost in
 * the snapshot, the summary and the audit log.
 */
test('a corrupt outbox.db is moved aside: the line keeps running, and the loss is counted in the summary and audited', async () => {
  const data = join(tmp.path, 'data');
  const outboxPath = join(data, 'outbox.db');
  mkdirSync(data, { recursive: true });
  const old = Outbox.open(outboxPath, { maxResults: 1000 });
  old.enqueueAll(Array.from({ length: 40 }, (_, i) => ({ kind: 'result' as const, topic: 't', payload: `{"n":${i}}`.padEnd(900, ' '), qos: 1 as const })));
  old.close();
  truncateSync(outboxPath, 3000); // the header survives, the table's pages do not

  const inbox = hotFolder(join(tmp.path, 'inbox'), 3);
  const auditFile = join(data, 'audit.db');
  const node = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit: { file: auditFile }, mqtt: { embeddedBroker: { port: 0 } } });
  const operator = await mqtt.connectAsync(node.broker!.url);
  const health: Array<{ routing: { outboxRecovered?: unknown } }> = [];
  operator.on('message', (_topic, payload) => health.push(JSON.parse(payload.toString())));
  try {
    await operator.subscribeAsync(node.transport!.topics.health, { qos: 1 });
    await node.node.run();
    await node.node.stop();
    await waitUntil(() => health.length > 0, 10_000, 'the last health report, sent as the node stops');
  } finally {
    await operator.endAsync();
    await node.node.stop();
  }
  const snap = node.node.snapshot();
  expect(health[0].routing.outboxRecovered).toEqual(snap.outboxRecovered);
  expect(snap.totals).toMatchObject({ ingested: 3, decided: 3, pending: 0 });
  expect(snap.outboxRecovered).toMatchObject({ movedTo: expect.stringContaining('outbox.db.corrupt-') });
  expect(snap.outboxRecovered?.code).toMatch(/^SQLITE_(CORRUPT|NOTADB)$/);
  const lost = snap.outboxRecovered?.resultsMayBeLost;
  expect(finalSummary(snap)).toContain(`${lost === null || lost === undefined ? 'an unknown number of' : lost} queued result(s) may be lost`);

  const db = new Database(auditFile, { readonly: true });
  try {
    const recovered = listEvents(db, {}, ['db_recovered']);
    expect(recovered).toHaveLength(1);
    expect(recovered[0].message).toContain(outboxPath);
    expect(recovered[0].message).toContain('may be lost');
  } finally {
    db.close();
  }
});

test('after the outbox is moved aside, a file a kill left behind with its audit row is decided again: its queued result may be lost with the old outbox', async () => {
  const data = join(tmp.path, 'leftover');
  const inbox = hotFolder(join(tmp.path, 'leftover-inbox'), 2);
  const config = { sources: [{ uri: `dir:${inbox}` }], audit: { file: join(data, 'audit.db') }, mqtt: { embeddedBroker: { port: 0 } } };
  const first = await sampleNode(config);
  await first.node.run();
  await first.node.stop();
  const [left] = readdirSync(join(inbox, 'done')).sort();
  renameSync(join(inbox, 'done', left), join(inbox, left)); // as a kill between its audit row and its move leaves it
  const fd = openSync(join(data, 'outbox.db'), 'r+');
  writeSync(fd, Buffer.alloc(100, 'x'), 0, 100, 0); // the header gone: not a database
  closeSync(fd);

  const second = await sampleNode(config);
  await second.node.run();
  await second.node.stop();
  expect(second.node.snapshot().outboxRecovered).toBeDefined();
  expect(second.decisions.map((d) => d.frameId.split('@')[0].split('/').pop())).toEqual([left]);
});
