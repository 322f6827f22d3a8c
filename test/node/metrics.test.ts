import { join } from 'node:path';
import { register as globalRegistry } from 'prom-client';
import { startDashboard, type Dashboard, type ExpertUsage } from '../../src/node/dashboard';
import { attachMetrics } from '../../src/node/metrics';
import { SDK_VERSION } from '../../src/version';
import type { NodeSnapshot } from '../../src/node/stats';
import { tempDir } from '../helpers/tmp';
import { hotFolder, parseMetrics, sampleNode, type SampleNode } from './sample-node';

/**
 * Real frames through a real node (two hot folders, one with a corrupt frame and one that drops under
 * backpressure, MQTT to an embedded broker), then `/metrics` scraped over HTTP must agree with the node.
 */
describe('Prometheus metrics of a running node', () => {
  const tmp = tempDir('sgmoe-metrics-');
  let sample: SampleNode;
  let dashboard: Dashboard;
  let metrics: Map<string, number>;
  let snapshot: NodeSnapshot;

  beforeAll(async () => {
    sample = await sampleNode({
      sources: [
        { uri: `dir:${hotFolder(join(tmp.path, 'cam-a'), 14, { corrupt: '0000-zz-corrupt.png' })}`, name: 'cam-a' },
        // A queue of one that drops the oldest: the folder is listed faster than frames are decided.
        { uri: `dir:${hotFolder(join(tmp.path, 'cam-b'), 14, { offset: 14 })}`, name: 'cam-b', policy: 'drop-oldest', capacity: 1 },
      ],
      window: 1,
      mqtt: { embeddedBroker: { port: 0 }, outbox: { path: join(tmp.path, 'outbox.db') } },
    });
    dashboard = await startDashboard(sample.node, { port: 0 });
    await sample.node.run();
    const response = await fetch(`${dashboard.url}metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    metrics = parseMetrics(await response.text());
    snapshot = sample.node.snapshot();
  });

  afterAll(async () => {
    await dashboard?.close();
    await sample?.node.stop();
    tmp.cleanup();
  });

  it('counts frames per source and status exactly as the node accounts for them', () => {
    expect(snapshot.totals.pending).toBe(0);
    expect(snapshot.totals.rejected).toBe(1);
    for (const source of snapshot.sources) {
      for (const status of ['decided', 'rejected', 'dropped'] as const) {
        expect(metrics.get(`sgmoe_frames_total{source="${source.name}",status="${status}"}`)).toBe(source[status]);
      }
      const settled = ['decided', 'rejected', 'dropped'].map((status) => metrics.get(`sgmoe_frames_total{source="${source.name}",status="${status}"}`)!);
      expect(settled.reduce((a, b) => a + b, 0)).toBe(source.ingested);
    }
    expect(metrics.get('sgmoe_frames_total{source="cam-a",status="rejected"}')).toBe(1);
  });

  it('observes every decision in the latency histograms, gate and expert only when they ran', () => {
    const decided = snapshot.totals.decided;
    const routed = sample.decisions.filter((d) => d.expert !== null).length;
    expect(decided).toBe(sample.decisions.length);
    expect(routed).toBeGreaterThan(0);
    expect(routed).toBeLessThan(decided);
    for (const stage of ['trunk', 'base', 'total']) expect(metrics.get(`sgmoe_stage_latency_seconds_count{stage="${stage}"}`)).toBe(decided);
    expect(metrics.get('sgmoe_stage_latency_seconds_count{stage="gate"}')).toBe(routed);
    expect(metrics.get('sgmoe_stage_latency_seconds_count{stage="expert"}')).toBe(routed);
    const totalS = sample.decisions.reduce((a, d) => a + d.timingsUs.total, 0) / 1e6;
    expect(metrics.get('sgmoe_stage_latency_seconds_sum{stage="total"}')).toBeCloseTo(totalS, 9);
    // Cumulative buckets: the +Inf bucket holds them all.
    expect(metrics.get('sgmoe_stage_latency_seconds_bucket{le="+Inf",stage="total"}')).toBe(decided);
  });

  it('counts expert selections and early exits in line with the snapshot shares and rate', () => {
    const decided = snapshot.totals.decided;
    const earlyExits = metrics.get('sgmoe_early_exits_total')!;
    expect(earlyExits / decided).toBeCloseTo(snapshot.earlyExitRate!, 12);
    const selections = snapshot.expertShares.map((_, e) => metrics.get(`sgmoe_expert_selections_total{expert="${e}"}`) ?? 0);
    const routed = selections.reduce((a, b) => a + b, 0);
    expect(routed + earlyExits).toBe(decided);
    selections.forEach((n, e) => expect(n / routed).toBeCloseTo(snapshot.expertShares[e], 12));
  });

  it('reports the outbox depth, the alarms by kind and the model from the snapshot', () => {
    expect(snapshot.outboxDepth).not.toBeNull();
    expect(metrics.get('sgmoe_outbox_depth')).toBe(snapshot.outboxDepth);
    for (const kind of ['router_collapse', 'expert_starved', 'drift', 'early_exit_rate']) {
      expect(metrics.get(`sgmoe_alarms_active{kind="${kind}"}`)).toBe(snapshot.alarms.filter((a) => a.kind === kind).length);
    }
    expect(metrics.get(`sgmoe_model_info{name="${snapshot.model.name}",version="${snapshot.model.version}"}`)).toBe(1);
    expect(metrics.get(`sgmoe_build_info{version="${SDK_VERSION}"}`)).toBe(1);
    expect(snapshot.model).toEqual({ name: 'fashion-sgmoe', version: expect.any(String) });
  });

  it('lets the dashboard count expert usage from its recent decisions when there is no audit log', async () => {
    const usage = (await (await fetch(`${dashboard.url}api/usage?windowS=600&buckets=5`)).json()) as ExpertUsage;
    expect(usage.origin).toBe('recent');
    const sum = (pick: (b: ExpertUsage['buckets'][number]) => number) => usage.buckets.reduce((a, b) => a + pick(b), 0);
    expect(sum((b) => b.noExpert)).toBe(sample.decisions.filter((d) => d.expert === null).length);
    snapshot.expertShares.forEach((_, e) => expect(sum((b) => b.experts[e])).toBe(sample.decisions.filter((d) => d.expert === e).length));
  });

  it('keeps its own registry, and detaching stops following the node', async () => {
    expect(await globalRegistry.metrics()).not.toContain('sgmoe_');
    const listeners = sample.node.listenerCount('decision');
    const attached = attachMetrics(sample.node);
    expect(sample.node.listenerCount('decision')).toBe(listeners + 1);
    expect(await attached.registry.metrics()).toContain('sgmoe_frames_total{source="cam-a",status="decided"}');
    attached.detach();
    expect(sample.node.listenerCount('decision')).toBe(listeners);
    expect(await attached.registry.metrics()).not.toContain('sgmoe_');
  });
});
