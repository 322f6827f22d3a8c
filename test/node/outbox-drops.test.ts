import { join } from 'node:path';
import { attachMetrics } from '../../src/node/metrics';
import { finalSummary, liveLine } from '../../src/node/summary';
import { waitUntil } from '../helpers/mqtt';
import { freePort } from '../helpers/net';
import { tempDir } from '../helpers/tmp';
import { countingBroker } from '../transport/support';
import { hotFolder, parseMetrics, sampleNode } from './sample-node';

const tmp = tempDir('sgmoe-drops-');
afterAll(() => tmp.cleanup());

test('results the full outbox drops while the broker is away are counted on /metrics, in the snapshot and in the summary', async () => {
  const port = await freePort();
  // One frame per engine batch, so one result per outbox row: the bound drops exactly the oldest 15 of 20.
  const sample = await sampleNode({
    sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'in'), 20)}` }],
    batch: { maxSize: 1 },
    healthIntervalMs: 3_600_000,
    mqtt: { url: `mqtt://127.0.0.1:${port}`, reconnect: { minMs: 50, maxMs: 200 }, outbox: { path: join(tmp.path, 'outbox.db'), maxResults: 5 } },
  });
  const metrics = attachMetrics(sample.node);
  const received: string[] = [];
  let broker: { stop(): Promise<void> } | null = null;
  try {
    await sample.node.run(); // no broker: every result goes into the outbox
    const snap = sample.node.snapshot();
    expect(snap.totals).toMatchObject({ ingested: 20, decided: 20, pending: 0 });
    expect(snap).toMatchObject({ outboxDepth: 5, outboxDropped: 15, unpublished: 0 });
    const scraped = parseMetrics(await metrics.registry.metrics());
    expect(scraped.get('sgmoe_outbox_dropped_total')).toBe(15);
    expect(scraped.get('sgmoe_outbox_depth')).toBe(5);
    expect(liveLine(snap)).toMatch(/\| outbox 5 \(15 dropped\)$/);
    expect(finalSummary(snap)).toContain('outbox       5 waiting for the broker\noutbox       15 results/rejections/health reports dropped (the outbox was full');

    // The broker comes back: it gets the 5 newest, and 5 sent + 15 dropped are the 20 decided.
    broker = await countingBroker(port, received);
    await waitUntil(() => sample.node.snapshot().outboxDepth === 0, 10_000, 'the outbox to drain');
    expect(received).toEqual(sample.decisions.slice(-5).map((d) => d.frameId));
    expect(sample.transport?.stats().outbox).toEqual({ pending: 0, queued: 20, sent: 5, dropped: 15 });
  } finally {
    metrics.detach();
    await sample.node.stop();
    await broker?.stop();
  }
});
