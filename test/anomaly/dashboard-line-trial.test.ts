import { EventEmitter } from 'node:events';
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { locateFrame, openReviewDb, standingReviews, type AuditRow } from '../../src/audit';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard, type Dashboard } from '../../src/node/dashboard';
import { RecentDecisions } from '../../src/node/dashboard/recent';
import type { EdgeNode } from '../../src/node/edge-node';
import { tempDir } from '../helpers/tmp';

const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** More good frames than the page's first 20, so the passed list has more than it shows at first. */
const EXTRA_GOOD = 24;

interface Row {
  frameId: string;
  seq: number;
  thumbnail: string | null;
  inputSha256?: string;
  anomaly: { threshold: number | null; heatmap: string | null };
  review: { verdict: string; kind: string | null } | null;
}
interface Anomalies {
  latest: Row[];
  passed: Row[];
  held: { latest: number; passed: number };
  capacity: number;
}

/**
 * What a quality engineer's line trial of the anomaly dashboard found: no defect kind on the page, review tables
 * wider than their half of the page, 20 passed frames shown of 200 held, an empty list after a restart, and the
 * early-exit sentinel shown as the threshold. A real node decides the package's samples (and more good frames) from
 * a hot folder in a deep path, as a line's are; the page runs in headless Chromium at 1280 px.
 */
describe('anomaly dashboard, line trial', () => {
  const tmp = tempDir('sgmoe-dashboard-line-trial-');
  const auditFile = join(tmp.path, 'data', 'audit.db');
  const framesDir = join(tmp.path, 'data', 'frames');
  const inbox = join(tmp.path, 'var', 'lib', 'sgmoe', 'plant-7', 'line-1', 'station-3', 'camera-top', 'inbox');
  let node: EdgeNode;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const anomalous: string[] = [];
  const passed: string[] = [];
  const anomalies = (url: string, query = '') => fetch(new URL(`/api/anomalies${query}`, url)).then((r) => r.json() as Promise<Anomalies>);

  beforeAll(async () => {
    mkdirSync(inbox, { recursive: true });
    const samples = readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png'));
    for (const f of samples) copyFileSync(join(LINE, 'samples', f), join(inbox, f));
    const good = samples.filter((f) => f.includes('good'));
    for (let i = 0; i < EXTRA_GOOD; i++) copyFileSync(join(LINE, 'samples', good[i % good.length]), join(inbox, `${100 + i}-good-again.png`));
    const config = parseNodeConfig({ model: LINE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${inbox}`, name: 'line-1' }], audit: { file: auditFile }, once: true });
    ({ node } = await createEdgeNode(config));
    node.on('decision', (frame, d) => ((d.extra as { anomaly: { verdict: string } }).anomaly.verdict === 'anomalous' ? anomalous : passed).push(frame.id));
    dashboard = await startDashboard(node, { port: 0, auditFile });
    await node.run();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    await page.goto(dashboard.url);
    await page.locator('#anomalies tbody tr .overlay img.thumb').nth(anomalous.length - 1).waitFor();
    await page.fill('#reviewer', 'qe');
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await node?.stop();
    tmp.cleanup();
  });

  const row = (table: string, frameId: string) => page.locator(`#${table} tr[data-frame-id="${frameId}"]`);

  it('a defect kind typed beside the defect button is sent with it, checked by the API, and shown in the verdict cell', async () => {
    const [scratched, refused] = [anomalous[anomalous.length - 1], anomalous[anomalous.length - 2]];
    await row('anomalies', scratched).locator('input.kind').fill('scratch');
    await row('anomalies', scratched).locator('button[data-verdict="defect"]').click();
    await row('anomalies', scratched).locator('td.review', { hasText: 'defect (scratch) \u00b7 qe' }).waitFor();
    // The API's one validation of kinds refuses a name no data-set folder may have; the cell says why.
    await row('anomalies', refused).locator('input.kind').fill('Good!');
    await row('anomalies', refused).locator('button[data-verdict="defect"]').click();
    await row('anomalies', refused).locator('td.review', { hasText: 'not recorded' }).filter({ hasText: 'kind' }).waitFor();

    const db = openReviewDb(auditFile);
    const reviews = standingReviews(db);
    db.close();
    expect(reviews.map((r) => [r.frameId, r.verdict, r.kind, r.reviewer])).toEqual([[scratched, 'defect', 'scratch', 'qe']]);
  });

  it('the same image under two frame ids judged defect and then good: the second verdict says neither is exported until they agree', async () => {
    const good = readdirSync(join(LINE, 'samples')).filter((f) => f.endsWith('.png') && f.includes('good'));
    // Two copies of one good sample, both among the latest frames the page shows.
    const [first, second] = [EXTRA_GOOD - 1, EXTRA_GOOD - 1 - good.length].map((i) => [...anomalous, ...passed].find((id) => basename(id.replace(/@\d+$/, '')) === `${100 + i}-good-again.png`)!);
    const table = (id: string) => (anomalous.includes(id) ? 'anomalies' : 'passed');
    await row(table(first), first).locator('input.kind').fill('scratch');
    await row(table(first), first).locator('button[data-verdict="defect"]').click();
    await row(table(first), first).locator('td.review', { hasText: 'defect (scratch) \u00b7 qe' }).waitFor();
    await row(table(second), second).locator('button[data-verdict="good"]').click();
    const said = `good \u00b7 qe \u00b7 the same image is ${100 + EXTRA_GOOD - 1}-good-again.png judged scratch by qe: not exported until they agree`;
    await row(table(second), second).locator('td.review', { hasText: said }).waitFor();
  });

  it('each review table fits its half of the page at 1280 px: the frame shows its file name, the full id as its title', async () => {
    const fits = `[...document.querySelectorAll('.review-tables > div')].map((d) => [d.scrollWidth <= d.clientWidth, d.scrollLeft])`;
    expect(await page.evaluate(fits)).toEqual([
      [true, 0],
      [true, 0],
    ]);
    const frame = row('anomalies', anomalous[0]).locator('td.frame');
    expect([await frame.textContent(), await frame.getAttribute('title')]).toEqual([basename(anomalous[0].slice(0, anomalous[0].lastIndexOf('@'))), anomalous[0]]);
    // A click leaves the thumbnail and frame name in view (the table used to scroll to the button).
    await row('passed', passed[passed.length - 1]).locator('button[data-verdict="good"]').click();
    await row('passed', passed[passed.length - 1]).locator('td.review', { hasText: 'good \u00b7 qe' }).waitFor();
    expect(await page.evaluate(fits)).toEqual([
      [true, 0],
      [true, 0],
    ]);
  });

  it('shows the latest 20 passed frames, and all the node holds on request', async () => {
    expect(passed.length).toBeGreaterThan(20);
    const all = await anomalies(dashboard.url, '?limit=200');
    expect([all.passed.length, all.held.passed, all.capacity]).toEqual([passed.length, passed.length, 200]);
    await page.locator('#passed-more', { hasText: `the latest 20 of the ${passed.length} the node holds` }).waitFor();
    expect(await page.locator('#passed tbody tr').count()).toBe(20);
    // Fewer anomalies than 20: all are shown, and nothing offers more.
    expect(await page.locator('#anomalies-more').isHidden()).toBe(true);
    await page.locator('#passed-more button').click();
    await page.locator('#passed-more', { hasText: `all ${passed.length} the node holds` }).waitFor();
    const shown = await page.evaluate(`[...document.querySelectorAll('#passed tbody tr')].map((tr) => tr.dataset.frameId)`);
    expect(shown).toEqual([...passed].reverse());
    await page.locator('#passed-more button', { hasText: 'show the latest 20' }).click();
    await page.locator('#passed-more', { hasText: 'the latest 20 of' }).waitFor();
    expect(await page.locator('#passed tbody tr').count()).toBe(20);
  });

  it('the header shows the anomaly threshold and its false-alarm rate, never the early-exit sentinel', async () => {
    const header = page.locator('#threshold');
    await header.filter({ hasText: 'anomaly threshold 1.092 (false-alarm rate 1 %) \u00b7 no early exit' }).waitFor();
    expect(await header.textContent()).not.toContain('-1000000000');
    // A rate set by command reads back from the package's calibration.
    node.setFalseAlarmRate(0.05);
    await header.filter({ hasText: 'false-alarm rate 5 %' }).waitFor();
    const snapshot = (await (await fetch(new URL('/api/snapshot', dashboard.url))).json()) as { anomalyThreshold: number; falseAlarmRate: number; earlyExit: string };
    expect(snapshot.falseAlarmRate).toBeCloseTo(0.05, 9);
    expect(snapshot.earlyExit).toBe('no early exit (the expert always runs)');
  });

  it('after a restart, the anomalies in the audit log are listed with their verdicts, threshold, heatmap and kept bytes (checked), and reviewable', async () => {
    // As the live page showed them: thresholds taken before the rate moved to 5 %, heatmaps from the decisions.
    const live = new Map((await anomalies(dashboard.url, '?limit=200')).latest.map((e) => [e.frameId, e.anomaly]));
    expect(live.size).toBe(anomalous.length);
    expect([...live.values()].every((a) => a.threshold !== null && a.heatmap?.startsWith('data:image/png;base64,'))).toBe(true);
    await dashboard.close();
    await node.stop();
    const db = openReviewDb(auditFile);
    const shaOf = (frameId: string) => db.prepare('SELECT input_sha256 FROM decisions WHERE frame_id = ?').pluck().get(frameId) as string;
    // One kept file no longer holds the bytes its row names: it is shown without a thumbnail and never held.
    const tampered = anomalous[0];
    writeFileSync(locateFrame(framesDir, shaOf(tampered))!, Buffer.from('not the frame'));
    // One row as an older release left it: no threshold in the row, no score map beside the frame. (The newest
    // anomaly, reviewed above, had its map moved to reviewed/ with its frame.)
    const older = anomalous[1];
    db.prepare('UPDATE decisions SET threshold = NULL WHERE frame_id = ?').run(older);
    rmSync(join(framesDir, `${shaOf(older)}.map.json`));
    expect(readdirSync(join(framesDir, 'reviewed'))).toContain(`${shaOf(anomalous[anomalous.length - 1])}.map.json`);
    db.close();

    const restartInbox = join(tmp.path, 'inbox-after-restart');
    mkdirSync(restartInbox);
    // Restarted at another false-alarm rate: each anomaly still shows the threshold it was flagged at.
    const config = parseNodeConfig({ model: LINE, device: 'x86_64-cpu', threads: 1, sources: [{ uri: `dir:${restartInbox}`, name: 'line-1' }], audit: { file: auditFile }, routing: { falseAlarmRate: 0.05 }, once: true });
    ({ node } = await createEdgeNode(config));
    expect(node.snapshot().anomalyThreshold).not.toBeCloseTo(live.get(tampered)!.threshold!, 3);
    dashboard = await startDashboard(node, { port: 0, auditFile });
    let seeded = await anomalies(dashboard.url, '?limit=200');
    expect(seeded.latest.map((e) => e.frameId)).toEqual([...anomalous].reverse());
    expect(seeded.passed).toEqual([]);
    const shown = (id: string) => (id === older ? [null, null] : [live.get(id)!.threshold, live.get(id)!.heatmap]);
    expect(seeded.latest.map((e) => [e.anomaly.threshold, e.anomaly.heatmap])).toEqual([...anomalous].reverse().map(shown));
    expect(seeded.latest[0].review).toMatchObject({ verdict: 'defect', kind: 'scratch' });
    // Thumbnails are made aside, one at a time: poll until every untampered one has its own.
    while (seeded.latest.filter((e) => e.thumbnail).length < anomalous.length - 1) {
      await new Promise((r) => setTimeout(r, 50));
      seeded = await anomalies(dashboard.url, '?limit=200');
    }
    expect(seeded.latest.filter((e) => !e.thumbnail).map((e) => e.frameId)).toEqual([tampered]);

    await page.goto(dashboard.url);
    const target = anomalous[1];
    await row('anomalies', target).locator('img.thumb').waitFor();
    // The page draws each kept map's heatmap over its frame; the older row has none.
    expect(await page.locator('#anomalies img.heat').count()).toBe(anomalous.length - 1);
    expect(await row('anomalies', older).locator('img.heat').count()).toBe(0);
    await page.fill('#reviewer', 'qe');
    await row('anomalies', target).locator('button[data-verdict="good"]').click();
    const cell = row('anomalies', target).locator('td.review');
    await cell.filter({ hasText: 'good \u00b7 qe' }).waitFor();
    expect(await cell.textContent()).not.toContain('no pixels');
    expect(readdirSync(join(framesDir, 'reviewed')).some((f) => f.startsWith(seeded.latest.find((e) => e.frameId === target)!.inputSha256!))).toBe(true);
  });

  it('seeds at most the live list capacity, the newest rows', () => {
    const events = new EventEmitter();
    const recent = new RecentDecisions(events as unknown as EdgeNode, 3, 0);
    const rows = [5, 4, 3, 2, 1].map((id) => ({ id, ts: id, frameId: `f${id}`, receivedAt: null, source: null, inputSha256: null, status: 'ok', label: 'anomalous', score: 2, expert: 0 }));
    recent.seed(rows as unknown as AuditRow[], framesDir);
    expect(recent.list().map((e) => e.frameId)).toEqual(['f3', 'f4', 'f5']);
    recent.close();
  });
});
