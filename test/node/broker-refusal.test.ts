import { join } from 'node:path';
import mqtt from 'mqtt';
import { attachMetrics } from '../../src/node/metrics';
import type { NodeFault } from '../../src/node/faults';
import { finalSummary } from '../../src/node/summary';
import { EmbeddedBroker } from '../../src/transport/broker';
import { waitUntil } from '../helpers/mqtt';
import { freePort } from '../helpers/net';
import { tempDir } from '../helpers/tmp';
import { hotFolder, parseMetrics, sampleNode } from './sample-node';

const tmp = tempDir('sgmoe-refusal-');
afterAll(() => tmp.cleanup());

/** Resolves with the first E_MQTT_AUTH fault event in `state`. */
function authFault(node: { on(e: 'fault', l: (f: NodeFault) => void): unknown }, state: NodeFault['state']): Promise<NodeFault> {
  return new Promise((resolve) => node.on('fault', (f) => f.code === 'E_MQTT_AUTH' && f.state === state && resolve(f)));
}

test('a broker that starts refusing the node\'s credentials raises the E_MQTT_AUTH fault, cleared when it accepts them again', async () => {
  const port = await freePort();
  // The plant's own client is always let in; the node only while `accepting` (its password changed on the broker, then back).
  let accepting = true;
  const authenticate = (user?: string, password?: string) => user === 'plant' || (accepting && user === 'edge' && password === 'secret');
  let broker = new EmbeddedBroker({ port, authenticate });
  await broker.start();
  const sample = await sampleNode({
    sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'in'), 2)}` }],
    mqtt: { url: broker.url, username: 'edge', password: 'secret', reconnect: { minMs: 50, maxMs: 200 }, outbox: { path: join(tmp.path, 'outbox.db') } },
  });
  const { node, transport } = sample;
  if (!transport) throw new Error('expected the transport');
  const metrics = attachMetrics(node);
  const plant = await mqtt.connectAsync(broker.url, { username: 'plant', reconnectPeriod: 50 });
  try {
    await node.run();
    expect(transport.stats().state).toBe('online');
    expect(node.snapshot().faults).toEqual([]);

    const raised = authFault(node, 'raised');
    accepting = false;
    await broker.stop(); // drops the node's connection; it reconnects to a broker that refuses it
    broker = new EmbeddedBroker({ port, authenticate });
    await broker.start();
    const fault = await raised;
    expect(fault.message).toMatch(/expected the broker to accept the node, found E_MQTT_AUTH: .*CONNACK code 4/);
    const snap = node.snapshot();
    expect(snap.faults).toEqual([expect.objectContaining({ code: 'E_MQTT_AUTH', state: 'raised' })]);
    expect(parseMetrics(await metrics.registry.metrics()).get('sgmoe_faults_active{code="E_MQTT_AUTH",source=""}')).toBe(1);
    expect(finalSummary(snap)).toContain('fault        E_MQTT_AUTH: expected the broker to accept the node');
    expect(transport.stats()).toMatchObject({ state: 'connecting', lastError: { code: 'E_MQTT_AUTH' } });

    // The plant listens before the node is let in again: the raised and the cleared alarm arrive, in order.
    await waitUntil(() => plant.connected, 5000, 'the plant client back on the new broker');
    const alarms: [string, string][] = [];
    plant.on('message', (_topic, payload) => {
      const alarm = JSON.parse(payload.toString());
      alarms.push([alarm.code, alarm.details.state]);
    });
    await plant.subscribeAsync(transport.topics.alarm, { qos: 1 });
    const cleared = authFault(node, 'cleared');
    accepting = true;
    await cleared;
    expect(node.snapshot().faults).toEqual([]);
    await waitUntil(() => alarms.length === 2, 10_000, 'the raised and the cleared alarm');
    expect(alarms).toEqual([
      ['E_MQTT_AUTH', 'raised'],
      ['E_MQTT_AUTH', 'cleared'],
    ]);
  } finally {
    metrics.detach();
    await plant.endAsync(true);
    await node.stop();
    await broker.stop();
  }
});
