import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openReviewDb, standingReviews } from '../../src/audit';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard, type Dashboard } from '../../src/node/dashboard';
import type { EdgeNode } from '../../src/node/edge-node';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A raw HTTP request, so the test sets Host, Origin and content-type exactly as a browser or an attacker would. */
function post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: { error?: { code: string } } }> {
  return new Promise((done, fail) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error?: { code: string } } }));
    });
    req.on('error', fail);
    req.end(body);
  });
}

/**
 * A real node decides the package's good and foreign sample frames from a hot folder with its audit log on; the
 * dashboard shows the anomaly rate and the latest anomalies (heatmap over thumbnail) in headless Chromium, and an
 * operator's click lands in the audit log. Requests from a page of another origin are refused.
 */
describe('anomaly dashboard', () => {
  const tmp = tempDir('sgmoe-anomaly-dashboard-');
  const auditFile = join(tmp.path, 'data', 'audit.db');
  let node: EdgeNode;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  let anomalous: string[];
  let decided = 0;
  const reviewCount = () => {
    const db = openReviewDb(auditFile);
    try {
      return db.prepare('SELECT count(*) FROM reviews').pluck().get() as number;
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    const inbox = join(tmp.path, 'inbox');
    mkdirSync(inbox, { recursive: true });
    for (const f of readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png'))) copyFileSync(join(LINE, 'samples', f), join(inbox, f));
    const config = parseNodeConfig({ model: LINE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}`, name: 'line-1' }], audit: { file: auditFile }, once: true });
    ({ node } = await createEdgeNode(config));
    anomalous = [];
    node.on('decision', (frame, d) => {
      decided++;
      if ((d.extra as { anomaly: { verdict: string } }).anomaly.verdict === 'anomalous') anomalous.push(frame.id);
    });
    dashboard = await startDashboard(node, { port: 0, auditFile });
    await node.run();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await node?.stop();
    tmp.cleanup();
  });

  it('shows the anomaly rate over time and each anomaly with its heatmap over the thumbnail', async () => {
    expect(anomalous.length).toBeGreaterThan(0);
    expect(anomalous.length).toBeLessThan(decided);
    await page.goto(dashboard.url);
    await page.waitForSelector('#anomaly-panel:not([hidden])');
    // Every anomalous frame, newest first, once its thumbnail has been made.
    // Browser-side code as strings: this project's TypeScript has no DOM types.
    // (The page's CSP forbids eval, so waits use locators, which need none.)
    await page.locator('#anomalies tbody tr .overlay img.thumb').nth(anomalous.length - 1).waitFor();
    const rows = (await page.evaluate(`[...document.querySelectorAll('#anomalies tbody tr')].map((tr) => ({
      frameId: tr.dataset.frameId,
      thumb: tr.querySelector('img.thumb')?.getAttribute('src') ?? '',
      heat: tr.querySelector('img.heat')?.getAttribute('src') ?? '',
      stacked: getComputedStyle(tr.querySelector('img.heat')).position === 'absolute',
      review: tr.querySelector('td.review')?.textContent,
      buttons: [...tr.querySelectorAll('button.verdict')].map((b) => b.textContent),
    }))`)) as Array<{ frameId: string; thumb: string; heat: string; stacked: boolean; review: string; buttons: string[] }>;
    expect(rows.map((r) => r.frameId)).toEqual([...anomalous].reverse());
    for (const r of rows) {
      expect(r.thumb).toMatch(/^data:image\/png;base64,/);
      expect(r.heat).toMatch(/^data:image\/png;base64,/);
      expect(r.stacked).toBe(true);
      expect(r.review).toBe('not reviewed');
      expect(r.buttons).toEqual(['good', 'defect']);
    }
    // The rate chart, drawn in the same poll, counts from the audit log (committed before each frame settled)
    // every decided frame and every anomalous one.
    const sum = (field: string) => page.evaluate(`[...document.querySelectorAll('#anomaly-chart rect')].reduce((a, r) => a + Number(r.dataset.${field}), 0)`);
    expect(await sum('decided')).toBe(decided);
    const anomalousInChart = await sum('anomalous');
    expect(anomalousInChart).toBe(anomalous.length);
  });

  it('a click marks a frame defect or good: the row says so and the audit log holds the verdict, who and via', async () => {
    await page.fill('#reviewer', 'anna');
    const first = page.locator('#anomalies tbody tr').first();
    const frameId = await first.getAttribute('data-frame-id');
    await first.locator('button[data-verdict="defect"]').click();
    const reviewShows = (id: string | null, text: string) => page.locator(`#anomalies tr[data-frame-id="${id}"] td.review`, { hasText: text }).waitFor();
    await reviewShows(frameId, 'defect \u00b7 anna');
    const second = page.locator('#anomalies tbody tr').nth(1);
    const other = await second.getAttribute('data-frame-id');
    await second.locator('button[data-verdict="good"]').click();
    await reviewShows(other, 'good \u00b7 anna');

    const db = openReviewDb(auditFile);
    const reviews = standingReviews(db);
    db.close();
    expect(reviews.map((r) => [r.frameId, r.verdict, r.kind, r.reviewer, r.via])).toEqual([
      [frameId, 'defect', 'defect', 'anna', 'dashboard'],
      [other, 'good', null, 'anna', 'dashboard'],
    ]);
  });

  it('refuses a review from another origin (a form, a JSON fetch), a non-JSON body and a wrong Host; nothing is recorded', async () => {
    const before = reviewCount();
    const target = new URL('/api/review', dashboard.url).toString();
    const body = JSON.stringify({ frameId: anomalous[0], verdict: 'good' });
    const host = new URL(dashboard.url).host;
    const other = await post(target, body, { host, origin: 'http://evil.example', 'content-type': 'application/json' });
    expect([other.status, other.body.error?.code]).toEqual([403, 'E_DASHBOARD_ORIGIN']);
    const crossSite = await post(target, body, { host, 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' });
    expect([crossSite.status, crossSite.body.error?.code]).toEqual([403, 'E_DASHBOARD_ORIGIN']);
    const text = await post(target, body, { host, 'content-type': 'text/plain' });
    expect([text.status, text.body.error?.code]).toEqual([400, 'E_DASHBOARD_BODY']);
    const rebound = await post(target, body, { host: 'attacker.example', 'content-type': 'application/json' });
    expect([rebound.status, rebound.body.error?.code]).toEqual([403, 'E_DASHBOARD_HOST']);
    const invalid = await post(target, JSON.stringify({ frameId: anomalous[0], verdict: 'fine' }), { host, 'content-type': 'application/json' });
    expect([invalid.status, invalid.body.error?.code]).toEqual([400, 'E_REVIEW_INVALID']);
    expect((await fetch(target)).status).toBe(405);

    // A real page on another origin, in the same browser: its form post and its fetch both fail.
    const attacker: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form id="f" method="post" enctype="text/plain" action="${target}"><input name='{"frameId":"${anomalous[0]}","verdict":"good","x":"' value='"}'></form>`);
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
    const attackerPage = await browser.newPage();
    await attackerPage.goto(`http://localhost:${(attacker.address() as AddressInfo).port}/`);
    const fetched = await attackerPage.evaluate(
      (url) =>
        fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"frameId":"x","verdict":"good"}' }).then(
          (r) => `status ${r.status}`,
          (e: Error) => `failed: ${e.message}`,
        ),
      target,
    );
    expect(fetched).toMatch(/^failed/);
    const [response] = await Promise.all([attackerPage.waitForResponse(target), attackerPage.evaluate("document.getElementById('f').submit()")]);
    expect(response.status()).toBe(400);
    await attackerPage.close();
    await new Promise((r) => attacker.close(r));
    expect(reviewCount()).toBe(before);
  });
});
