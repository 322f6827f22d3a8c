import Database from 'better-sqlite3';
import { existsSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { listEvents } from '../../src/audit/query';
import { finalSummary } from '../../src/node/summary';
import { auditCli } from '../helpers/audit-cli';
import { EmbeddedBroker } from '../../src/transport/broker';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { hotFolder, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/**
 * A real audit log cut short between two runs (a kill mid-write, a bad sector): the next node moves it aside and
 * audits into a fresh one, and the operator hears of it on MQTT, not only in the device's log. One who missed the
 * alarm still finds it in the snapshot (the dashboard's), every health report, the summary and `sgmoe audit stats`.
 */
test('a truncated audit.db is moved aside at start: an E_AUDIT_RECOVERED alarm, the snapshot, the health report and the summary name the moved file, and the fresh log records it', async () => {
  const broker = new EmbeddedBroker();
  const url = await broker.start();
  const operator = await mqtt.connectAsync(url);
  try {
    const alarms: Array<{ code: string; message: string; details?: { movedTo?: string } }> = [];
    const health: Array<{ routing?: { auditRecovered?: unknown } }> = [];
    operator.on('message', (topic, payload) => (topic.endsWith('/health') ? health : alarms).push(JSON.parse(payload.toString())));
    await operator.subscribeAsync(['sgmoe/v1/+/+/alarm', 'sgmoe/v1/+/+/health'], { qos: 1 });

    const auditFile = join(tmp.path, 'data', 'audit.db');
    const config = { audit: { file: auditFile }, mqtt: { url, site: 'plant', device: 'line-1' } };
    const first = await sampleNode({ ...config, sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox-1'), 3)}` }] });
    await first.node.run();
    await first.node.stop();
    expect(statSync(auditFile).size).toBeGreaterThan(3000);
    truncateSync(auditFile, 3000); // the header survives, the tables' pages do not

    const next = await sampleNode({ ...config, sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox-2'), 2)}` }] });
    try {
      await next.node.run();
    } finally {
      await next.node.stop();
    }
    await waitUntil(() => alarms.some((a) => a.code === 'E_AUDIT_RECOVERED'), 5000, 'the alarm');
    const alarm = alarms.find((a) => a.code === 'E_AUDIT_RECOVERED')!;
    const movedTo = alarm.details?.movedTo ?? '';
    expect(movedTo).toContain(`${auditFile}.corrupt-`);
    expect(alarm.message).toContain(movedTo);
    expect(existsSync(movedTo)).toBe(true);

    const snap = next.node.snapshot();
    expect(snap.auditRecovered).toEqual({ movedTo, code: expect.stringMatching(/^SQLITE_(CORRUPT|NOTADB)$/), reason: expect.any(String), at: expect.any(Number) });
    expect(movedTo).toContain(new Date(snap.auditRecovered!.at).toISOString().replace(/[:.]/g, '-'));
    expect(finalSummary(snap)).toContain(`moved to ${movedTo} at ${new Date(snap.auditRecovered!.at).toISOString()}`);
    // The first node's reports say null; the next one's (at least the one it sends as it stops) name the moved file.
    await waitUntil(() => health.some((h) => h.routing?.auditRecovered), 5000, 'a health report naming the moved file');
    expect(health.find((h) => h.routing?.auditRecovered)?.routing?.auditRecovered).toEqual(snap.auditRecovered);

    const db = new Database(auditFile, { readonly: true });
    try {
      const recovered = listEvents(db, {}, ['db_recovered']);
      expect(recovered).toHaveLength(1);
      expect(recovered[0].message).toContain(movedTo);
      // So does `sgmoe audit stats` on the fresh log, after a restart too.
      expect(await auditCli('stats', '--db', auditFile)).toContain(`recovered ${new Date(recovered[0].ts).toISOString()}: ${recovered[0].message}`);
      expect(db.prepare("SELECT count(*) FROM decisions WHERE status = 'ok'").pluck().get()).toBe(2);
    } finally {
      db.close();
    }
  } finally {
    await operator.endAsync();
    await broker.stop();
  }
});
