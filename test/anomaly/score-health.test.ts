import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { framesDirOf, listEvents, openAuditDbReadOnly } from '../../src/audit';
import { sha256Hex } from '../../src/model/integrity';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { Mosquitto, MosquittoSub, waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const tmp = tempDir('sgmoe-score-health-');
let broker: Mosquitto;

beforeAll(async () => {
  broker = await Mosquitto.create(tmp.path);
  await broker.start();
});

afterAll(async () => {
  await broker.stop();
  tmp.cleanup();
});

/**
 * A line that suddenly carries a foreign product: 240 frames, mostly bags (the held-out class of the shipped
 * fashion-line package). Routing health sees the scores leave the good-image calibration: anomaly_rate and
 * score_drift are raised once each, in the audit log and on the alarm topic of a real mosquitto. The anomalous
 * frames' bytes are kept beside the audit log for review.
 */
test('a node fed foreign parts raises anomaly_rate and score_drift, in the audit log and on …/alarm', async () => {
  const inbox = join(tmp.path, 'inbox');
  mkdirSync(inbox, { recursive: true });
  const samples = readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png'));
  const bags = samples.filter((f) => f.includes('bag'));
  const goods = samples.filter((f) => f.includes('good'));
  for (let i = 0; i < 240; i++) {
    const f = i % 4 === 3 ? goods[i % goods.length] : bags[i % bags.length];
    copyFileSync(join(LINE, 'samples', f), join(inbox, `${String(i).padStart(3, '0')}-${f}`));
  }
  const sub = new MosquittoSub(broker.port, 'sgmoe/v1/plant/line/alarm', ['-q', '1']);
  const probe = await mqtt.connectAsync(broker.url);
  await waitUntil(() => (void probe.publishAsync('sgmoe/v1/plant/line/alarm', '{"probe":true}'), sub.lines.length > 0), 10_000, 'mosquitto_sub');
  await probe.endAsync();

  const auditFile = join(tmp.path, 'audit.db');
  const config = parseNodeConfig({
    model: LINE,
    device: 'x86_64-cpu',
    threads: 1,
    sources: [{ uri: `dir:${inbox}`, name: 'line-1' }],
    mqtt: { url: broker.url, site: 'plant', device: 'line' },
    audit: { file: auditFile },
    once: true,
  });
  const { node } = await createEdgeNode(config);
  let anomalous = 0;
  const flagged = new Set<string>();
  const good = new Set<string>();
  node.on('decision', (frame, d) => {
    const sha = sha256Hex(frame.bytes!);
    if ((d.extra as { anomaly: { verdict: string } }).anomaly.verdict !== 'anomalous') return void good.add(sha);
    anomalous++;
    flagged.add(sha);
  });
  await node.run();
  const scores = node.sample().routing?.scores;
  await node.stop();

  // The node's window (its last 240 ≤ 1000 decisions) holds every frame.
  expect(scores).toEqual({ scored: 240, anomalyRate: anomalous / 240, drift: expect.any(Number) as number });
  expect(scores!.anomalyRate).toBeGreaterThan(0.1);
  expect(scores!.drift).toBeGreaterThan(0.2);

  const db = openAuditDbReadOnly(auditFile);
  const raised = listEvents(db, {}, ['alarm_raised']).map((e) => e.details?.alarm);
  db.close();
  expect(raised).toEqual(expect.arrayContaining(['anomaly_rate', 'score_drift']));
  expect(raised.filter((k) => k === 'anomaly_rate')).toHaveLength(1);

  // By default the node keeps, for review, the bytes of exactly the anomalous frames, once per distinct image, each
  // with its score map.
  expect(new Set(readdirSync(framesDirOf(auditFile)))).toEqual(new Set([...flagged].flatMap((sha) => [`${sha}.png`, `${sha}.map.json`])));
  expect([...good].some((sha) => flagged.has(sha))).toBe(false);

  const codes = () =>
    sub
      .messages()
      .map(([, m]) => m as { code?: string; details?: { state?: string } })
      .filter((m) => m.details?.state === 'raised')
      .map((m) => m.code);
  await waitUntil(() => codes().includes('E_ROUTING_ANOMALY_RATE') && codes().includes('E_ROUTING_SCORE_DRIFT'), 15_000, 'alarms on MQTT');
  await sub.stop();
});
