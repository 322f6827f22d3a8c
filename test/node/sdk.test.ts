import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { auditStats, createEdgeNode, openAuditDbReadOnly, parseNodeConfig, PushSource, type Frame } from '../../src';
import { BUNDLED } from '../helpers/package';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const tmp = tempDir('sgmoe-sdk-');
afterAll(() => tmp.cleanup());
const BEARING = join(ROOT, 'models', 'bearing-sgmoe');

/** The README's "From your own code" in a test: a node fed by the caller's own PushSource. */
describe('a node fed from code', () => {
  it('accounts for frames its push source dropped: in the counters, as dropped events and in the audit log', async () => {
    const camera = new PushSource('line-1', { capacity: 2, policy: 'drop-oldest' });
    const audit = join(tmp.path, 'drops.db');
    const { node } = await createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1, audit: { file: audit } }), {
      extraSources: [{ source: camera, preprocess: {} }],
    });
    const dropped: Frame[] = [];
    node.on('dropped', (frame) => dropped.push(frame));
    const png = readFileSync(join(BUNDLED, 'samples', readdirSync(join(BUNDLED, 'samples')).find((f) => f.endsWith('.png'))!));
    for (let i = 0; i < 10; i++) await camera.push(png); // nothing takes frames yet: the oldest go
    camera.end();
    await node.run();
    await node.stop();
    expect(node.snapshot().totals).toMatchObject({ ingested: 10, decided: 2, dropped: 8 });
    expect(dropped).toHaveLength(8);
    const db = openAuditDbReadOnly(audit);
    try {
      expect(auditStats(db, {}).byStatus).toMatchObject({ ok: 2, dropped: 8 });
    } finally {
      db.close();
    }
  });

  it('windows what it pushes to a signal package: a recording (named as a file) and a stream of sample blocks', async () => {
    const sensor = new PushSource('press-7');
    const { node } = await createEdgeNode(parseNodeConfig({ model: BEARING, threads: 1 }), { extraSources: [{ source: sensor, preprocess: {} }] });
    const decided: string[] = [];
    node.on('decision', (_frame, d) => decided.push(d.label));
    const wav = readFileSync(join(BEARING, 'samples', readdirSync(join(BEARING, 'samples')).find((f) => f.endsWith('-healthy.wav'))!));
    await sensor.push({ bytes: wav, meta: { file: 'healthy.wav' } });
    const { sampleRate, channels, window } = node.engine.manifest.input as { sampleRate: number; channels: number; window: number };
    const samples = Array.from({ length: window }, (_, i) => Array.from({ length: channels }, (_, c) => Math.sin(i / (5 + c)) * 0.01));
    await sensor.push(Buffer.from(JSON.stringify({ sampleRate, channels, samples })));
    sensor.end();
    await node.run();
    await node.stop();
    expect(node.snapshot().totals).toMatchObject({ ingested: 2, decided: 2, rejected: 0 });
    expect(decided[0]).toBe('healthy');
  });

  it('runs once: a second run() while running and a run() after stop() are refused, not silently resolved', async () => {
    const camera = new PushSource('line-1');
    const { node } = await createEdgeNode({ model: BUNDLED, threads: 1 }, { extraSources: [{ source: camera, preprocess: {} }] });
    const running = node.run();
    await expect(node.run()).rejects.toMatchObject({ code: 'E_NODE_RUNNING' });
    camera.end();
    await running;
    await node.stop();
    await expect(node.run()).rejects.toMatchObject({ code: 'E_NODE_STOPPING' });
  });

  it('decides on stop the frames its source already holds, without waiting for more: none is left pending', async () => {
    const camera = new PushSource('line-1');
    const { node } = await createEdgeNode({ model: BUNDLED, threads: 1 }, { extraSources: [{ source: camera, preprocess: {} }] });
    const png = readFileSync(join(BUNDLED, 'samples', readdirSync(join(BUNDLED, 'samples')).find((f) => f.endsWith('.png'))!));
    for (let i = 0; i < 5; i++) await camera.push(png); // queued: nothing takes frames yet
    const running = node.run();
    await node.stop();
    await running;
    expect(node.snapshot().totals).toMatchObject({ ingested: 5, decided: 5, pending: 0 });
  });

  it('takes a plain config object as the config file would be, and refuses an invalid one with E_CONFIG_INVALID', async () => {
    const { node } = await createEdgeNode({ model: BUNDLED, threads: 1 });
    expect(node.engine.model.name).toBe('fashion-sgmoe');
    await node.stop();
    await expect(createEdgeNode({ model: BUNDLED, sources: [{ uri: 'dir:/tmp', fit: 'stretch' }] } as never)).rejects.toMatchObject({ code: 'E_CONFIG_INVALID' });
  });
});
