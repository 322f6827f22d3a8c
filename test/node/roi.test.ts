import { join } from 'node:path';
import mqtt from 'mqtt';
import type { NodeFault } from '../../src/node/faults';
import { waitUntil } from '../helpers/mqtt';
import { tempDir } from '../helpers/tmp';
import { samplesClip } from '../helpers/video';
import { attachMetrics } from '../../src/node/metrics';
import { hotFolder, parseMetrics, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('an ROI outside the frames of its source', () => {
  it('a decoded video whose picture the ROI does not fit (no frame is ever made) raises the same fault, naming the source', async () => {
    const clip = samplesClip(join(tmp.path, 'clip.mp4'));
    const node = await sampleNode({ sources: [{ uri: `video:${clip}`, name: 'cam-video', roi: { x: 0, y: 0, width: 640, height: 480 } }] });
    await node.node.run();
    expect(node.node.snapshot().faults).toEqual([
      expect.objectContaining({ code: 'E_FRAME_ROI', source: 'cam-video', state: 'raised', message: expect.stringContaining('expected the ROI 640x480+0+0 inside the frame, found a 224x224 frame') }),
    ]);
    await node.node.stop();
  });

  it('raises one E_FRAME_ROI alarm at the first frame, naming the source, in the snapshot, /metrics, the alarm topic and the health report', async () => {
    const inbox = hotFolder(join(tmp.path, 'inbox'), 5);
    const node = await sampleNode({
      sources: [{ uri: `dir:${inbox}`, name: 'cam-misplaced', roi: { x: 100, y: 0, width: 20, height: 20 } }],
      mqtt: { embeddedBroker: { port: 0 } },
    });
    const { broker, transport } = node;
    if (!broker || !transport) throw new Error('expected the embedded broker and the transport');
    const faults: NodeFault[] = [];
    node.node.on('fault', (f) => faults.push(f));
    const operator = await mqtt.connectAsync(broker.url);
    const messages: Array<[string, any]> = [];
    operator.on('message', (topic, payload) => messages.push([topic, JSON.parse(payload.toString())]));
    try {
      await operator.subscribeAsync([transport.topics.alarm, transport.topics.health], { qos: 1 });
      await node.node.run();
      expect(node.node.snapshot().faults).toEqual([expect.objectContaining({ code: 'E_FRAME_ROI', source: 'cam-misplaced', state: 'raised' })]);
      const metrics = attachMetrics(node.node);
      expect(parseMetrics(await metrics.registry.metrics()).get('sgmoe_faults_active{code="E_FRAME_ROI",source="cam-misplaced"}')).toBe(1);
      metrics.detach();
      await node.node.stop();
      await waitUntil(() => messages.some(([t]) => t === transport.topics.health), 10_000, 'the last health report');
    } finally {
      await operator.endAsync();
    }

    expect(node.rejected.map((r) => r.code)).toEqual(new Array(5).fill('E_FRAME_ROI'));
    expect(faults).toHaveLength(1);
    expect(faults[0].message).toMatch(/cam-misplaced: .*expected the ROI 20x20\+100\+0 inside the frame, found a 28x28 frame/);
    const alarms = messages.filter(([t]) => t === transport.topics.alarm).map(([, m]) => m);
    expect(alarms).toEqual([expect.objectContaining({ code: 'E_FRAME_ROI', details: expect.objectContaining({ source: 'cam-misplaced', state: 'raised' }) })]);
    const health = messages.filter(([t]) => t === transport.topics.health).map(([, m]) => m);
    expect(health.at(-1).routing.faults).toEqual([expect.objectContaining({ code: 'E_FRAME_ROI', source: 'cam-misplaced' })]);
    // The health report accounts per source, as the snapshot does.
    expect(health.at(-1).sources).toEqual([expect.objectContaining({ name: 'cam-misplaced', ingested: 5, rejected: 5, decided: 0, pending: 0 })]);
  });
});
