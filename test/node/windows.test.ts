import { join } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { attachMetrics } from '../../src/node/metrics';
import { finalSummary } from '../../src/node/summary';
import { tempDir } from '../helpers/tmp';
import { variant } from '../fleet/support';
import { hotFolder, parseMetrics, SAMPLE_NAMES, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('the labelled windows "since start" and "since the current model"', () => {
  it('after a swap with no later frames, the summary, the snapshot and /metrics show both spans, each with its own figures', async () => {
    const n = SAMPLE_NAMES.length; // picked to exercise the early exit and every expert
    const node = await sampleNode({ sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'in'), n)}` }], audit: { file: join(tmp.path, 'audit.db') } });
    await node.node.run();
    const routed = node.decisions.filter((d) => d.expert !== null).length;
    const earlyExits = node.decisions.filter((d) => d.earlyExit).length;
    expect(node.decisions).toHaveLength(n);
    expect(routed).toBeGreaterThan(0);

    const next = await Engine.load(variant(join(tmp.path, 'v1.1.0'), (m) => (m.version = '1.1.0')), { threads: { intraOp: 1 } });
    const { previous } = await node.node.swap(next);
    await previous.dispose();
    const snapshot = node.node.snapshot();
    const metrics = attachMetrics(node.node);
    const scraped = parseMetrics(await metrics.registry.metrics());
    metrics.detach();
    await node.node.stop();

    // Since start keeps every decision of the run; since the current model (1.1.0) has none yet.
    expect(snapshot.windows.sinceStart).toMatchObject({ label: 'since start', model: null, decided: n, routed, earlyExitRate: earlyExits / n });
    expect(snapshot.windows.sinceStart.latencyUs).not.toBeNull();
    expect(snapshot.windows.sinceModel).toMatchObject({ label: 'since the current model', model: { version: '1.1.0' }, decided: 0, routed: 0, earlyExitRate: null, latencyUs: null });
    // The snapshot's own fields are the current model's, as labelled: never its shares beside the run's rate.
    expect([snapshot.earlyExitRate, snapshot.latencyUs]).toEqual([null, null]);

    const summary = finalSummary(snapshot);
    expect(summary).toMatch(new RegExp(`since start \\(since \\S+\\)\\n  decided +${n}, early exit ${((earlyExits / n) * 100).toFixed(1)}%`));
    expect(summary).toMatch(new RegExp(`\\n  experts +#0 [\\d.]+%.* \\(${routed} routed\\)`));
    expect(summary).toMatch(/since the current model \(fashion-sgmoe 1\.1\.0, since \S+\)\n {2}decided +0, early exit n\/a\n {2}experts +no decision ran an expert \(0 routed\)\n {2}latency +n\/a \(no decision\)/);

    expect(scraped.get('sgmoe_window_decisions{window="since_start"}')).toBe(n);
    expect(scraped.get('sgmoe_window_decisions{window="since_model"}')).toBe(0);
    expect(scraped.get('sgmoe_window_early_exit_ratio{window="since_start"}')).toBeCloseTo(earlyExits / n, 12);
    expect(scraped.has('sgmoe_window_early_exit_ratio{window="since_model"}')).toBe(false);
    const shares = [...scraped].filter(([k]) => k.startsWith('sgmoe_window_expert_share{') && k.includes('window="since_start"'));
    expect(shares.reduce((a, [, v]) => a + v, 0)).toBeCloseTo(1, 9);
  });
});
