import { join } from 'node:path';
import mqtt from 'mqtt';
import { finalSummary } from '../../src/node/summary';
import { tmpfsTests } from '../helpers/tmpfs';
import { waitUntil } from '../helpers/mqtt';
import { hotFolder, sampleNode } from './sample-node';

const { tmp, disk, onTmpfs } = tmpfsTests('read-only', 1024 * 1024);
if (!('unavailable' in disk)) disk.readOnly();

describe('a read-only data folder (a real read-only mount)', () => {
  onTmpfs('an outbox that cannot open does not stop the line: results reach the broker from memory, and the snapshot and summary say why', async () => {
    if ('unavailable' in disk) return;
    const inbox = hotFolder(join(tmp, 'inbox'), 4);
    // The outbox defaults to the audit log's folder: both are on the read-only mount.
    const node = await sampleNode({ sources: [{ uri: `dir:${inbox}` }], audit: { file: join(disk.path, 'audit.db') }, mqtt: { embeddedBroker: { port: 0 } } });
    const subscriber = await mqtt.connectAsync(node.broker!.url);
    const results: unknown[] = [];
    subscriber.on('message', (_topic, payload) => results.push(JSON.parse(payload.toString())));
    try {
      await subscriber.subscribeAsync(node.transport!.topics.result, { qos: 1 });
      await node.node.run();
      await waitUntil(() => results.length === 4, 10_000, 'the four results to arrive');
    } finally {
      await subscriber.endAsync();
      await node.node.stop();
    }
    const snap = node.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 4, decided: 4, pending: 0 });
    expect(snap.outboxUnavailable?.code).toBe('E_OUTBOX_OPEN');
    expect(snap.outboxUnavailable?.message).toContain(join(disk.path, 'outbox.db'));
    expect(snap.auditUnavailable).not.toBeNull();
    expect(snap.unaudited).toBe(4);
    expect(finalSummary(snap)).toMatch(/outbox .* in memory, a restart loses them \(E_OUTBOX_OPEN/);
  });
});
