import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { startDashboard, type Dashboard, type ExpertUsage, type RecentEntry } from '../../src/node/dashboard';
import { ThumbnailWorker } from '../../src/node/dashboard/thumbnail';
import { tempDir } from '../helpers/tmp';
import { SAMPLES, SAMPLE_NAMES, hotFolder, sampleNode, type SampleNode } from './sample-node';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const CORRUPT = '0000-corrupt.png';

/** Polls until `check` holds: the node writes its audit log in batches and the page polls every second. */
async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, tries = 50): Promise<T> {
  for (let i = 0; ; i++) {
    const value = await read();
    if (check(value) || i >= tries) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A real node decides sample frames from a hot folder (one corrupt) with its audit log on; the dashboard serves
 * them, and headless Chromium (Debian's, via playwright-core) must show exactly what the node decided.
 */
describe('dashboard', () => {
  const tmp = tempDir('sgmoe-dashboard-');
  const auditFile = join(tmp.path, 'audit.db');
  let sample: SampleNode;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const api = <T>(path: string) => fetch(new URL(path, dashboard.url)).then((r) => r.json() as Promise<T>);

  beforeAll(async () => {
    sample = await sampleNode({
      sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), 24, { corrupt: CORRUPT })}`, name: 'line-1' }],
      audit: { file: auditFile },
    });
    dashboard = await startDashboard(sample.node, { port: 0, auditFile });
    await sample.node.run();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await sample?.node.stop();
    tmp.cleanup();
  });

  it('serves on 127.0.0.1 and answers bad requests with a stable code', async () => {
    expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const bad = await fetch(new URL('/api/usage?buckets=lots', dashboard.url));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('E_DASHBOARD_QUERY');
    const missing = await fetch(new URL('/nowhere', dashboard.url));
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('E_DASHBOARD_NOT_FOUND');
    expect((await fetch(dashboard.url, { method: 'POST' })).status).toBe(405);
  });

  it('lists the recent decisions with a PNG thumbnail each, and the rejected frame with its reason', async () => {
    const { decisions } = await eventually(
      () => api<{ decisions: RecentEntry[] }>('/api/decisions?limit=100'),
      (r) => r.decisions.every((e) => e.status === 'rejected' || e.thumbnail !== null),
    );
    const decided = decisions.filter((e) => e.status === 'decided');
    expect(decided.map((e) => [e.frameId, e.label])).toEqual(sample.decisions.map((d) => [d.frameId, d.label]));
    for (const e of decided) expect(e.thumbnail).toMatch(/^data:image\/png;base64,/);
    const rejected = decisions.filter((e) => e.status === 'rejected');
    expect(sample.rejected).toEqual([{ frameId: expect.stringContaining(CORRUPT), code: expect.stringMatching(/^E_FRAME_/) }]);
    expect(rejected.map((e) => e.status === 'rejected' && [e.frameId, e.error.code])).toEqual(sample.rejected.map((r) => [r.frameId, r.code]));
    // Polling for what is new: nothing after the last one.
    const last = decisions[decisions.length - 1].seq;
    expect((await api<{ decisions: RecentEntry[] }>(`/api/decisions?after=${last}`)).decisions).toEqual([]);
  });

  it('counts expert usage over time from the audit log, matching the decisions', async () => {
    const routedBy = (e: number) => sample.decisions.filter((d) => d.expert === e).length;
    const usage = await eventually(
      () => api<ExpertUsage>('/api/usage?windowS=600&buckets=10'),
      (u) => u.buckets.reduce((a, b) => a + b.noExpert + b.experts.reduce((x, y) => x + y, 0), 0) === sample.decisions.length,
    );
    expect(usage.origin).toBe('audit');
    expect(usage.buckets).toHaveLength(10);
    const perExpert = usage.buckets[0].experts.map((_, e) => usage.buckets.reduce((a, b) => a + b.experts[e], 0));
    expect(perExpert).toEqual(perExpert.map((_, e) => routedBy(e)));
    expect(usage.buckets.reduce((a, b) => a + b.noExpert, 0)).toBe(sample.decisions.filter((d) => d.expert === null).length);
  });

  it('shows the decisions the node made, the model and the accounting in headless Chromium, and saves a screenshot', async () => {
    const snapshot = sample.node.snapshot();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()));
    await page.goto(dashboard.url);
    // The page polls every second: wait for a row per frame and a thumbnail per decision.
    await page.waitForSelector(`#decisions tbody tr:nth-child(${sample.decisions.length + 1})`);
    await page.waitForSelector(`:nth-match(#decisions tbody img, ${sample.decisions.length})`);

    const rows = await page.$$eval('#decisions tbody tr', (trs) =>
      trs.map((tr) => ({
        status: tr.getAttribute('data-status'),
        frame: tr.querySelector('.frame')?.textContent,
        label: tr.querySelector('.label')?.textContent,
        route: tr.querySelector('.route')?.textContent,
      })),
    );
    expect(rows).toHaveLength(sample.decisions.length + 1);
    const shown = rows.filter((r) => r.status === 'decided');
    // Newest first on the page.
    const made = [...sample.decisions].reverse();
    expect(shown.map((r) => [r.frame, r.label])).toEqual(made.map((d) => [d.frameId, d.label]));
    expect(shown.map((r) => r.route)).toEqual(made.map((d) => (d.earlyExit ? 'early exit' : `expert ${d.expert}`)));
    expect(rows.filter((r) => r.status === 'rejected')).toEqual(
      sample.rejected.map((r) => expect.objectContaining({ frame: r.frameId, label: 'rejected', route: r.code })),
    );

    expect(await page.textContent('#model-name')).toBe(snapshot.model.name);
    expect(await page.textContent('#model-version')).toBe(snapshot.model.version);
    expect(await page.textContent('#decided')).toBe(String(snapshot.totals.decided));
    expect(await page.textContent('#early-exit')).toBe(`${(snapshot.earlyExitRate! * 100).toFixed(1)} %`);
    // Both labelled spans, each with its own figures (no swap here: the same counts).
    const spans = await page.$$eval('#windows tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    const rate = `${(snapshot.earlyExitRate! * 100).toFixed(1)} %`;
    expect(spans.map((r) => [r[0], r[2], r[3]])).toEqual([
      ['since start', String(snapshot.totals.decided), rate],
      [`since the current model (${snapshot.model.version})`, String(snapshot.totals.decided), rate],
    ]);
    const source = await page.$$eval('#sources tbody td', (tds) => tds.map((td) => td.textContent));
    expect(source).toEqual(['line-1', 'dir', '25', String(snapshot.totals.decided), '1', '0', '0', '0', '']);
    await page.waitForSelector('#usage-chart svg rect');
    expect(await page.textContent('#usage-origin')).toContain('audit log');
    // The scale's label fits in the chart for a busy line's bars too (a hot folder's backlog: tens of thousands a bar).
    const labelLeft = await page.evaluate(`(() => { const t = document.querySelector('#usage-chart svg text'); t.textContent = '88888'; return t.getBBox().x; })()`);
    expect(labelLeft).toBeGreaterThanOrEqual(0);
    expect(await page.textContent('#alarms')).toContain('no alarm raised');
    expect(errors).toEqual([]);

    const shot = join(tmp.path, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
  });
});

describe('dashboard alarms', () => {
  const tmp = tempDir('sgmoe-dashboard-faults-');

  afterAll(() => tmp.cleanup());

  it("lists a device fault as a raised alarm and says what the node could not keep (a frame not audited), in headless Chromium", async () => {
    // An ROI outside the frames raises E_FRAME_ROI; a file where the audit log's folder should be leaves it closed.
    writeFileSync(join(tmp.path, 'not-a-folder'), 'a file where the audit folder should be');
    const sample = await sampleNode({
      sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), 2)}`, name: 'cam-misplaced', roi: { x: 100, y: 0, width: 20, height: 20 } }],
      audit: { file: join(tmp.path, 'not-a-folder', 'audit.db') },
    });
    const dashboard = await startDashboard(sample.node, { port: 0 });
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    try {
      await sample.node.run();
      const alarms = (await (await fetch(new URL('/api/alarms', dashboard.url))).json()) as { faults: Array<{ code: string }>; notices: Array<{ part: string; text: string }> };
      expect(alarms.faults).toEqual([expect.objectContaining({ code: 'E_FRAME_ROI', source: 'cam-misplaced', state: 'raised' })]);
      expect(alarms.notices).toEqual([{ part: 'audit', text: expect.stringMatching(/^2 frames not audited \(/) }]);

      const page = await browser.newPage();
      await page.goto(dashboard.url);
      await page.waitForSelector('#alarms li[data-code="E_FRAME_ROI"]');
      expect(await page.textContent('#alarms li[data-code="E_FRAME_ROI"]')).toContain('cam-misplaced');
      expect(await page.textContent('#alarms li.notice')).toContain('2 frames not audited');
      expect(await page.textContent('#alarms')).not.toContain('no alarm raised');
      expect(await page.textContent('#alarm-count')).toBe('1');
    } finally {
      await browser.close();
      await dashboard.close();
      await sample.node.stop();
    }
  });
});

describe('thumbnail worker', () => {
  it('makes PNG thumbnails newest first and gives up the oldest waiting ones beyond its bound', async () => {
    const worker = new ThumbnailWorker(2);
    const frame = readFileSync(join(SAMPLES, SAMPLE_NAMES[0]));
    const order: Array<[number, boolean]> = [];
    const all = [1, 2, 3, 4, 5].map(
      (n) => new Promise<void>((resolve) => worker.request(n === 5 ? Buffer.from('not an image') : frame, (url) => (order.push([n, url !== null]), resolve()))),
    );
    await Promise.all(all);
    // 1 starts at once; 4 and 5 push 2 and 3 out of the queue of two and run newest first; 5 cannot be decoded.
    expect(order).toEqual([[2, false], [3, false], [1, true], [5, false], [4, true]]);
    worker.close();
    const late = await new Promise<string | null>((resolve) => worker.request(frame, resolve));
    expect(late).toBeNull();
  });

  it('fits the frame inside 64 pixels as a PNG data URL', async () => {
    const url = await new Promise<string | null>((resolve) => new ThumbnailWorker().request(readFileSync(join(SAMPLES, SAMPLE_NAMES[0])), resolve));
    const png = Buffer.from(url!.replace(/^data:image\/png;base64,/, ''), 'base64');
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });
});
