import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { queryDecisions } from '../../src/audit/query';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { finalSummary } from '../../src/node/summary';
import { anomalyPayloadSchema } from '../../src/protocol/payloads';
import { Mosquitto, MosquittoSub, waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
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

async function readySubscriber(topic: string): Promise<MosquittoSub> {
  const sub = new MosquittoSub(broker.port, topic, ['-q', '1']);
  const probe = await mqtt.connectAsync(broker.url);
  try {
    await waitUntil(() => (void probe.publishAsync('sgmoe/v1/plant/line/probe', '{"probe":true}'), sub.lines.length > 0), 10_000, 'mosquitto_sub');
  } finally {
    await probe.endAsync();
  }
  return sub;
}

const messages = (sub: MosquittoSub, suffix: string) =>
  sub
    .messages()
    .filter(([topic]) => topic.endsWith(suffix))
    .map(([, m]) => m);

describe('anomaly line end to end', () => {
  it('a hot folder of good and foreign parts: exactly the anomalous frames on …/anomaly (mosquitto), audit rows equal frames', async () => {
    const inbox = join(tmp.path, 'inbox');
    mkdirSync(inbox, { recursive: true });
    const samples = readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png'));
    for (const f of samples) copyFileSync(join(LINE, 'samples', f), join(inbox, f));
    const sub = await readySubscriber('sgmoe/v1/plant/line/#');

    const config = parseNodeConfig({
      model: LINE,
      device: 'x86_64-cpu',
      threads: 1,
      sources: [{ uri: `dir:${inbox}`, name: 'line-1' }],
      mqtt: { url: broker.url, site: 'plant', device: 'line' },
      // The anomaly-rate alarm judged from 5 frames on (200 by default), so these few samples can raise it.
      audit: { file: join(tmp.path, 'audit.db'), health: { minSamples: 5, anomalyRate: 0.05 } },
      once: true,
    });
    const { node } = await createEdgeNode(config);
    await node.run();
    await node.stop();
    expect(node.snapshot().totals).toMatchObject({ ingested: samples.length, decided: samples.length, rejected: 0, dropped: 0, pending: 0 });
    // The summary names the anomaly threshold, not the early exit's sentinel.
    expect(finalSummary(node.snapshot())).toMatch(/threshold +anomaly [\d.]+ \(false-alarm rate 1.0%\); no early exit \(the expert always runs\)/);

    await waitUntil(() => messages(sub, '/result').length >= samples.length, 15_000, 'results on MQTT');
    const results = messages(sub, '/result');
    const flagged = results.filter((r) => r.anomaly.verdict === 'anomalous');
    await waitUntil(() => messages(sub, '/anomaly').length >= flagged.length, 15_000, 'anomalies on MQTT');
    await sub.stop();
    const anomalies = messages(sub, '/anomaly');

    expect(flagged.length).toBeGreaterThan(0);
    expect(flagged.length).toBeLessThan(samples.length);
    expect(new Set(anomalies.map((a) => a.frameId))).toEqual(new Set(flagged.map((r) => r.frameId)));
    expect(anomalies).toHaveLength(flagged.length);
    // The anomaly rate is counted where the node reports, and read by the fleet's health watch.
    expect(node.snapshot().windows.sinceStart.anomalous).toBe(flagged.length);
    expect(node.snapshot().alarms).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'anomaly_rate', state: 'raised' })]));
    expect(node.sample().anomalous).toBe(flagged.length);
    expect(finalSummary(node.snapshot())).toContain(`decided    ${samples.length}, early exit 0.0%, anomalous ${flagged.length} (`);
    for (const r of results) {
      expect(r.label).toBe(r.anomaly.verdict);
      expect(r.anomaly.verdict === 'anomalous').toBe(r.anomaly.score >= r.anomaly.threshold);
    }
    for (const a of anomalies) {
      anomalyPayloadSchema.parse(a);
      expect(Buffer.from(a.heatmapPng, 'base64').subarray(0, 4)).toEqual(PNG_SIGNATURE);
    }

    const conn = openAuditDbReadOnly(join(tmp.path, 'audit.db'));
    const rows = queryDecisions(conn, {}, { limit: 1000 });
    conn.close();
    expect(rows).toHaveLength(samples.length);
    for (const r of results) {
      const row = rows.find((x) => x.frameId === r.frameId)!;
      expect(row).toMatchObject({ status: 'ok', label: r.anomaly.verdict, expert: r.expert });
      expect(row.score).toBeCloseTo(r.anomaly.score, 5);
    }
  });
});
