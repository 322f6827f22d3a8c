import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { PushSource } from '../../src/ingest/sources/push';
import type { Frame } from '../../src/ingest/frame';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { MqttTransport } from '../../src/transport/client';
import { BUNDLED } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const samples = readdirSync(join(BUNDLED, 'samples'))
  .filter((f) => f.endsWith('.png'))
  .slice(0, 3)
  .map((f) => readFileSync(join(BUNDLED, 'samples', f)));

describe('the way from a decision to the disk and the broker', () => {
  it('stores and sends the result first, commits the audit row after it, and settles the frame only after both', async () => {
    const steps: string[] = [];
    const realPublish = MqttTransport.prototype.publishResults;
    const realCommit = AuditLog.prototype.commit;
    const sent = jest.spyOn(MqttTransport.prototype, 'publishResults').mockImplementation(function (this: MqttTransport, results) {
      steps.push(...results.map((r) => `sent ${r.decision.frameId}`));
      realPublish.call(this, results);
    });
    const audited = jest.spyOn(AuditLog.prototype, 'commit').mockImplementation(function (this: AuditLog, records) {
      realCommit.call(this, records);
      steps.push(...records.map((r) => `audited ${r.frame.frameId}`));
    });
    const camera = new PushSource('camera');
    const settled = new Map<string, () => void>();
    const realSettle = camera.settle.bind(camera);
    camera.settle = async (frame: Frame, outcome) => {
      steps.push(`settled ${frame.id}`);
      await realSettle(frame, outcome);
      settled.get(frame.id)?.();
    };
    const { node } = await createEdgeNode(
      parseNodeConfig({
        model: BUNDLED,
        threads: 1,
        audit: { file: join(tmp.path, 'audit.db') },
        mqtt: { embeddedBroker: { port: 0 }, outbox: { path: join(tmp.path, 'outbox.db') } },
      }),
      { extraSources: [{ source: camera, preprocess: {} }] },
    );
    const running = node.run();
    try {
      for (const [i, bytes] of samples.entries()) {
        const done = new Promise<void>((resolve) => settled.set(`f${i}`, resolve));
        await camera.push({ id: `f${i}`, bytes });
        await done;
      }
    } finally {
      camera.end();
      await running;
      await node.stop();
      sent.mockRestore();
      audited.mockRestore();
    }
    expect(steps).toEqual(samples.flatMap((_, i) => [`sent f${i}`, `audited f${i}`, `settled f${i}`]));
  });
});
