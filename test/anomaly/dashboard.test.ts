import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { listEvents, openAuditDbReadOnly, openReviewDb, standingReviews } from '../../src/audit';
import { isLoopback } from '../../src/node/dashboard/auth';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard, type Dashboard } from '../../src/node/dashboard';
import type { EdgeNode } from '../../src/node/edge-node';
import { auditCli } from '../helpers/audit-cli';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A raw HTTP request, so the test sets Host, Origin and content-type exactly as a browser or an attacker would. */
function post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; body: { error?: { code: string }; reviewer?: string }; authenticate?: string }> {
  return new Promise((done, fail) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error?: { code: string } }, authenticate: res.headers['www-authenticate'] }));
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
const TOKEN = 'line-1-operator-token-0123456789';
/** A named operator's token: her verdicts are recorded under her name. */
const ANNA = 'anna-own-operator-token-987654321';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('anomaly dashboard', () => {
  const tmp = tempDir('sgmoe-anomaly-dashboard-');
  const auditFile = join(tmp.path, 'data', 'audit.db');
  const inbox = join(tmp.path, 'inbox');
  let node: EdgeNode;
  let dashboard: Dashboard;
  /** The same node's dashboard with an operator token, holding no frame bytes (a budget of one byte). */
  let guarded: Dashboard;
  let browser: Browser;
  let page: Page;
  let anomalous: string[];
  let passed: string[];
  let decided = 0;
  /** The bytes a frame arrived with (the hot folder moved it to done/). */
  const bytesOf = (frameId: string) => readFileSync(join(inbox, 'done', basename(frameId.slice(0, frameId.lastIndexOf('@')))));
  const reviewCount = () => {
    const db = openReviewDb(auditFile);
    try {
      return db.prepare('SELECT count(*) FROM reviews').pluck().get() as number;
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    mkdirSync(inbox, { recursive: true });
    for (const f of readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png'))) copyFileSync(join(LINE, 'samples', f), join(inbox, f));
    const config = parseNodeConfig({ model: LINE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}`, name: 'line-1' }], audit: { file: auditFile }, once: true });
    ({ node } = await createEdgeNode(config));
    anomalous = [];
    passed = [];
    node.on('decision', (frame, d) => {
      decided++;
      ((d.extra as { anomaly: { verdict: string } }).anomaly.verdict === 'anomalous' ? anomalous : passed).push(frame.id);
    });
    // Several dashboards listen to this one node (each with its recent frames, metrics and condition view).
    node.setMaxListeners(30);
    dashboard = await startDashboard(node, { port: 0, auditFile });
    guarded = await startDashboard(node, { port: 0, auditFile, token: TOKEN, operators: [{ name: 'anna', token: ANNA }], heldFrameBytes: 1 });
    await node.run();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await guarded?.close();
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
    // The scale's label fits in the chart at its widest, a line where every frame is anomalous.
    const labelLeft = await page.evaluate(`(() => { const t = document.querySelector('#anomaly-chart svg text'); t.textContent = '100.0 %'; return t.getBBox().x; })()`);
    expect(labelLeft).toBeGreaterThanOrEqual(0);
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
  it('lists the frames passed as good beside the anomalies: a missed defect is marked from the page and keeps its pixels', async () => {
    expect(passed.length).toBeGreaterThan(3);
    await page.goto(dashboard.url);
    await page.locator('#passed tbody tr .overlay img.thumb').nth(passed.length - 1).waitFor();
    const rows = (await page.evaluate(`[...document.querySelectorAll('#passed tbody tr')].map((tr) => ({
      frameId: tr.dataset.frameId,
      sha256: tr.dataset.sha256,
      heat: tr.querySelectorAll('img.heat').length,
      buttons: [...tr.querySelectorAll('button.verdict')].map((b) => b.textContent),
    }))`)) as Array<{ frameId: string; sha256: string; heat: number; buttons: string[] }>;
    expect(rows.map((r) => r.frameId)).toEqual([...passed].reverse());
    // Each row names the bytes it shows, so a verdict binds to them even if the frame id comes back with others.
    for (const r of rows) expect([r.sha256, r.heat, r.buttons]).toEqual([sha256(bytesOf(r.frameId)), 0, ['good', 'defect']]);

    // The node's frame store keeps anomalous frames only: this one's bytes come from the dashboard's recent frames.
    const frameId = rows[0].frameId;
    const framesDir = join(tmp.path, 'data', 'frames');
    expect(readdirSync(framesDir).some((f) => f.startsWith(sha256(bytesOf(frameId))))).toBe(false);
    await page.fill('#reviewer', 'ben');
    await page.locator(`#passed tr[data-frame-id="${frameId}"] button[data-verdict="defect"]`).click();
    const cell = page.locator(`#passed tr[data-frame-id="${frameId}"] td.review`);
    await cell.filter({ hasText: 'defect \u00b7 ben' }).waitFor();
    expect(await cell.textContent()).not.toContain('no pixels');
    const kept = readdirSync(join(framesDir, 'reviewed')).filter((f) => f.startsWith(sha256(bytesOf(frameId))));
    expect(kept).toEqual([`${sha256(bytesOf(frameId))}.png`]);
    expect(readFileSync(join(framesDir, 'reviewed', kept[0])).equals(bytesOf(frameId))).toBe(true);
  });

  it('with an operator token, a review without it or with a wrong one is refused (401), audited once, and nothing is recorded', async () => {
    const before = reviewCount();
    const target = new URL('/api/review', guarded.url).toString();
    const host = new URL(guarded.url).host;
    const body = JSON.stringify({ frameId: passed[0], verdict: 'good' });
    const json = { host, 'content-type': 'application/json' };
    const missing = await post(target, body, json);
    expect([missing.status, missing.body.error?.code, missing.authenticate]).toEqual([401, 'E_DASHBOARD_UNAUTHORISED', 'Bearer realm="sgmoe-dashboard"']);
    const wrong = await post(target, body, { ...json, authorization: `Bearer ${TOKEN}x` });
    expect([wrong.status, wrong.body.error?.code]).toEqual([401, 'E_DASHBOARD_UNAUTHORISED']);
    const truncated = await post(target, body, { ...json, authorization: `Bearer ${TOKEN.slice(0, -1)}` });
    expect(truncated.status).toBe(401);
    expect(reviewCount()).toBe(before);
    // One event for the burst (the rest folded into the next one's count): probing cannot fill the audit log.
    const db = openAuditDbReadOnly(auditFile);
    const refused = listEvents(db, {}, ['dashboard_refused']);
    db.close();
    expect(refused.map((e) => e.details)).toEqual([{ code: 'E_DASHBOARD_UNAUTHORISED', reason: 'missing', method: 'POST', path: '/api/review', remote: '127.0.0.1', suppressed: 0 }]);

    const right = await post(target, body, { ...json, authorization: `Bearer ${TOKEN}` });
    expect([right.status, right.body.reviewer]).toEqual([201, 'dashboard']);
    // A named operator's token says who reviewed: the name the request gave does not.
    const asAnna = await post(target, JSON.stringify({ frameId: passed[0], verdict: 'good', reviewer: 'ben' }), { ...json, authorization: `Bearer ${ANNA}` });
    expect([asAnna.status, asAnna.body.reviewer]).toEqual([201, 'anna']);
    // The shared token cannot write under a named operator's name.
    const spoofed = await post(target, JSON.stringify({ frameId: passed[0], verdict: 'defect', reviewer: 'anna' }), { ...json, authorization: `Bearer ${TOKEN}` });
    expect([spoofed.status, spoofed.body.error?.code]).toEqual([400, 'E_REVIEW_INVALID']);
    expect(reviewCount()).toBe(before + 2);
    const anomalies = (authorization: string) => fetch(new URL('/api/anomalies', guarded.url), { headers: { authorization } }).then((r) => r.json() as Promise<{ operator: string | null }>);
    expect((await anomalies(`Bearer ${ANNA}`)).operator).toBe('anna');
    expect((await anomalies(`Bearer ${TOKEN}`)).operator).toBeNull();
  });

  it('the page shows no data without the token, asks for it once, forgets a wrong one, then shows the frames and takes verdicts', async () => {
    const guardedPage = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
    await guardedPage.goto(guarded.url);
    // Every poll of the page (its three scripts) is refused: one token field asks, and nothing of the node shows.
    await guardedPage.locator('#token-field').waitFor();
    await guardedPage.locator('#status', { hasText: 'enter the operator token' }).waitFor();
    expect(await guardedPage.locator('#token-field').count()).toBe(1);
    expect(await guardedPage.locator('#anomaly-panel').isHidden()).toBe(true);
    expect(await guardedPage.locator('#decisions tbody tr').count()).toBe(0);
    expect(await guardedPage.locator('#model-name').textContent()).toBe('\u2026');
    // A wrong token is refused and forgotten: the field asks again.
    await guardedPage.fill('#token', `${TOKEN}x`);
    await guardedPage.press('#token', 'Enter');
    await guardedPage.locator('#status', { hasText: 'the operator token was refused' }).waitFor();
    await guardedPage.locator('#token-field').waitFor();
    expect(await guardedPage.evaluate("sessionStorage.getItem('sgmoe-operator-token')")).toBeNull();
    await guardedPage.fill('#token', TOKEN);
    await guardedPage.press('#token', 'Enter');
    await guardedPage.locator('#token-field').waitFor({ state: 'hidden' });
    expect(await guardedPage.evaluate("sessionStorage.getItem('sgmoe-operator-token')")).toBe(TOKEN);
    await guardedPage.locator('#status', { hasText: 'live' }).waitFor();
    const row = guardedPage.locator(`#passed tr[data-frame-id="${passed[1]}"]`);
    await row.waitFor();
    expect(await guardedPage.locator('#model-name').textContent()).toBe(node.snapshot().model.name);
    await row.locator('button[data-verdict="defect"]').click();
    // This dashboard holds no frame bytes and the store kept none: the verdict stands, without pixels.
    await row.locator('td.review', { hasText: 'defect \u00b7 dashboard \u00b7 no pixels kept: not exported' }).waitFor();
    // A reload in the same tab asks no more.
    await guardedPage.reload();
    await guardedPage.locator(`#passed tr[data-frame-id="${passed[2]}"] button[data-verdict="good"]`).click();
    await guardedPage.locator(`#passed tr[data-frame-id="${passed[2]}"] td.review`, { hasText: 'good \u00b7 dashboard' }).waitFor();
    expect(await guardedPage.locator('#token-field').isVisible()).toBe(false);
    await guardedPage.close();
  });

  it('the export writes the verdicts with pixels as the data set and lists those without', async () => {
    const out = join(tmp.path, 'dataset');
    const result = JSON.parse(await auditCli('export', '--db', auditFile, '--reviewed', '--as-dataset', out)) as { written: Record<string, number>; missing: Array<{ frameId: string }> };
    // Both through the guarded dashboard, which held no bytes: the raw POST's and the page's verdicts.
    expect(result.missing.map((m) => m.frameId)).toEqual([passed[0], passed[1], passed[2]]);
    const defects = readdirSync(join(out, 'test', 'defect')).map((f) => readFileSync(join(out, 'test', 'defect', f)));
    expect(defects.some((b) => b.equals(bytesOf(passed[passed.length - 1])))).toBe(true);
  });

  it('serves a non-loopback address only with a token or when told to let anyone in, with or without the audit log', async () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost'].map(isLoopback)).toEqual([true, true, true, true, true]);
    expect(['0.0.0.0', '::', '192.168.1.20', 'line-1.local'].map(isLoopback)).toEqual([false, false, false, false]);
    for (const withLog of [{ auditFile }, {}]) {
      await expect(startDashboard(node, { port: 0, host: '0.0.0.0', ...withLog })).rejects.toMatchObject({ code: 'E_DASHBOARD_TOKEN' });
      await expect(startDashboard(node, { port: 0, ...withLog, token: 'short' })).rejects.toMatchObject({ code: 'E_DASHBOARD_TOKEN' });
      for (const options of [{ token: TOKEN }, { withoutToken: true }]) {
        const open = await startDashboard(node, { port: 0, host: '0.0.0.0', ...withLog, ...options });
        await open.close();
      }
    }
  });
});
