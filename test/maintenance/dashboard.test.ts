import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import type { Decision } from '../../src/engine/decision';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard, type ConditionSnapshot, type Dashboard } from '../../src/node/dashboard';
import { amplitudeSpectrum } from '../../src/node/dashboard/spectrum';
import type { EdgeNode } from '../../src/node/edge-node';
import { tempDir } from '../helpers/tmp';

const PACKAGE = resolve(__dirname, '..', '..', 'models', 'bearing-sgmoe');
const SAMPLES = join(PACKAGE, 'samples');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('amplitude spectrum for the dashboard', () => {
  it('puts a sinusoid at its frequency with its amplitude, per channel', () => {
    const rate = 25600;
    const n = 8192;
    const samples = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      samples[i] = 0.5 * Math.sin((2 * Math.PI * 1000 * i) / rate);
      samples[n + i] = 0.1 * Math.sin((2 * Math.PI * 5000 * i) / rate) + 3; // an offset is removed
    }
    const s = amplitudeSpectrum(samples, 2, rate, 256);
    expect(s.db).toHaveLength(2);
    expect(s.db[0]).toHaveLength(256);
    expect(s.hzPerPoint).toBe(50);
    const peak = (line: number[]) => line.indexOf(Math.max(...line));
    expect(peak(s.db[0])).toBe(1000 / 50);
    expect(peak(s.db[1])).toBe(5000 / 50);
    expect(s.db[0][20]).toBeCloseTo(20 * Math.log10(0.5), 0);
    expect(s.db[1][100]).toBeCloseTo(20 * Math.log10(0.1), 0);
  });
});

/**
 * A real node on the shipped bearing package decides the package's sample windows from two hot folders (two
 * machines); the dashboard's condition view and headless Chromium must show, per machine, what the node decided:
 * its latest spectrum, and its condition and regime per window in order.
 */
describe('dashboard of a condition package', () => {
  const tmp = tempDir('sgmoe-condition-dashboard-');
  const decisions: Array<{ source: string; d: Decision }> = [];
  let node: EdgeNode;
  let dashboard: Dashboard;
  let browser: Browser;
  const files = readdirSync(SAMPLES).filter((f) => f.endsWith('.wav')).sort();

  beforeAll(async () => {
    const machines = { 'press-7': files.slice(0, Math.ceil(files.length / 2)), 'pump-2': files.slice(Math.ceil(files.length / 2)) };
    const sources = Object.entries(machines).map(([name, names]) => {
      const dir = join(tmp.path, name);
      mkdirSync(dir);
      for (const f of names) copyFileSync(join(SAMPLES, f), join(dir, f));
      return { uri: `dir:${dir}`, name };
    });
    ({ node } = await createEdgeNode(parseNodeConfig({ model: PACKAGE, device: 'x86_64-cpu', threads: 1, once: true, sources })));
    node.on('decision', (frame, d) => decisions.push({ source: frame.source, d }));
    dashboard = await startDashboard(node, { port: 0 });
    await node.run();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await node?.stop();
    tmp.cleanup();
  });

  it('serves per machine the condition and regime of every window in order, and the latest window spectrum', async () => {
    expect(decisions).toHaveLength(files.length);
    const s = (await (await fetch(new URL('/api/condition', dashboard.url))).json()) as ConditionSnapshot;
    const manifest = JSON.parse(readFileSync(join(PACKAGE, 'manifest.json'), 'utf8'));
    expect(s.condition).toBe(true);
    expect(s.labels).toEqual(manifest.labels);
    expect(s.regimes).toEqual(manifest.regimes.experts.map((e: { speedRpm: string }) => e.speedRpm));
    expect(s.machines.map((m) => m.source).sort()).toEqual(['press-7', 'pump-2']);
    for (const m of s.machines) {
      const mine = decisions.filter((x) => x.source === m.source).map((x) => x.d);
      expect(m.timeline.map((p) => [p.frameId, p.condition, p.regimeExpert, p.unknownRegime])).toEqual(
        mine.map((d) => [d.frameId, d.extra!.condition, d.extra!.regimeExpert, d.extra!.unknownRegime]),
      );
      expect(m.latest.frameId).toBe(mine[mine.length - 1].frameId);
      expect(m.spectrum).toMatchObject({ frameId: m.latest.frameId, sampleRate: manifest.input.sampleRate });
      expect(m.spectrum!.db).toHaveLength(manifest.input.channels);
      for (const line of m.spectrum!.db) expect(line.every(Number.isFinite)).toBe(true);
    }
  });

  it('shows each machine with its spectrum and its timeline in headless Chromium', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()));
    await page.goto(dashboard.url);
    await page.waitForSelector('#condition-panel:not([hidden]) .machine:nth-child(2) svg.timeline rect.regime');
    const shown = await page.$$eval('#machines .machine', (boxes) =>
      boxes.map((b) => ({
        source: b.getAttribute('data-source'),
        now: b.querySelector('.now-condition')?.textContent,
        traces: b.querySelectorAll('svg.spectrum path.trace').length,
        conditions: [...b.querySelectorAll('svg.timeline rect.condition')].map((r) => r.getAttribute('data-condition')),
        regimes: [...b.querySelectorAll('svg.timeline rect.regime')].map((r) => r.getAttribute('data-regime')),
      })),
    );
    const channels = JSON.parse(readFileSync(join(PACKAGE, 'manifest.json'), 'utf8')).input.channels;
    for (const box of shown) {
      const mine = decisions.filter((x) => x.source === box.source).map((x) => x.d);
      expect(box.now).toBe(mine[mine.length - 1].extra!.condition);
      expect(box.traces).toBe(channels);
      expect(box.conditions).toEqual(mine.map((d) => d.extra!.condition));
      expect(box.regimes).toEqual(mine.map((d) => (d.extra!.unknownRegime ? 'unknown' : String(d.extra!.regimeExpert))));
    }
    expect(shown.map((b) => b.source).sort()).toEqual(['press-7', 'pump-2']);
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(tmp.path, 'condition.png'), fullPage: true });
    await page.close();
  });
});
