import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { openAuditDbReadOnly, queryDecisions } from '../../src/audit';
import { sha256Hex } from '../../src/model/integrity';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { startDashboard, type Dashboard } from '../../src/node/dashboard';
import type { EdgeNode } from '../../src/node/edge-node';
import { sgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';

const ROOT = resolve(__dirname, '..', '..');
const LINE = join(ROOT, 'models', 'texture-line-anomaly');
const PYTHON = '/usr/bin/python3';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DEFECTS = ['hole', 'paste', 'scratch'];

interface Decided {
  id: string;
  /** What the clip showed there: good, or the defect kind. */
  truth: string;
  verdict: string;
  /** The pixels the node decided on (the decoder's gray frame at the package's 64x64). */
  pixels: Buffer;
}

interface Entry {
  frameId: string;
  thumbnail: string | null;
  inputSha256?: string;
  anomaly: { verdict: string; heatmap: string | null };
}

/** A gray image's size, the channels it was stored with, and its pixels (the first channel's, one byte each). */
async function grayPixels(image: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { width, height, channels } = await sharp(image).metadata();
  return { data: await sharp(image).extractChannel(0).raw().toBuffer(), width: width!, height: height!, channels: channels! };
}

/**
 * A camera's frames through the review loop, on real parts: texture patches (the factory's generator) recorded as a
 * lossless clip, decided by a node on a `video:` source running the shipped texture package; the anomalous frames are
 * kept as PNGs, the dashboard shows their pixels under the heatmap, an operator judges every frame there, and the
 * export is a data folder of those very pictures that the anomaly factory's loader takes.
 */
describe('camera frames in the review loop', () => {
  const tmp = tempDir('sgmoe-camera-review-');
  const auditFile = join(tmp.path, 'data', 'audit.db');
  const framesDir = join(tmp.path, 'data', 'frames');
  let node: EdgeNode | undefined;
  let dashboard: Dashboard | undefined;
  let browser: Browser | undefined;
  const decided: Decided[] = [];

  beforeAll(async () => {
    const textures = join(tmp.path, 'textures');
    expect(spawnSync(PYTHON, [join(ROOT, 'scripts/factory/anomaly/datasets.py'), 'textures', textures], { encoding: 'utf8' }).status).toBe(0);
    // 44 good patches spread over the textures (the loader wants 40 good ones at least) and two of each defect,
    // one frame each, in this order.
    const goods = readdirSync(join(textures, 'train', 'good')).sort();
    const order: Array<{ file: string; truth: string }> = [];
    for (let i = 0; i < 44; i++) order.push({ file: join(textures, 'train', 'good', goods[Math.floor((i * goods.length) / 44)]), truth: 'good' });
    for (const [k, kind] of DEFECTS.entries()) {
      for (const [j, name] of readdirSync(join(textures, 'test', kind)).sort().slice(0, 2).entries()) {
        order.splice(7 + 14 * k + 5 * j, 0, { file: join(textures, 'test', kind, name), truth: kind });
      }
    }
    const stills = join(tmp.path, 'stills');
    mkdirSync(stills);
    order.forEach((o, i) => copyFileSync(o.file, join(stills, `${String(i).padStart(3, '0')}.png`)));
    const clip = join(tmp.path, 'line.mkv');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-framerate', '25', '-i', join(stills, '%03d.png'), '-c:v', 'ffv1', '-pix_fmt', 'gray', clip]);

    // At the camera's own pace, as a line runs (the dashboard's thumbnails keep up), and every frame decided.
    const source = { uri: `video:${clip}`, name: 'cam-1', rate: 'native', policy: 'block' };
    const config = parseNodeConfig({ model: LINE, device: 'x86_64-cpu', threads: 1, sources: [source], audit: { file: auditFile }, once: true });
    ({ node } = await createEdgeNode(config));
    node.on('decision', (frame, d) => {
      const { verdict } = (d.extra as { anomaly: { verdict: string } }).anomaly;
      const at = Math.round((frame.meta as { ptsSeconds: number }).ptsSeconds * 25);
      decided.push({ id: frame.id, truth: order[at].truth, verdict, pixels: frame.raw!.data });
    });
    dashboard = await startDashboard(node, { port: 0, auditFile });
    await node.run();
    // Every row committed and every kept frame written; the dashboard stays up for the operator.
    await node.stop();
    expect(decided).toHaveLength(order.length);
  });

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await node?.stop();
    tmp.cleanup();
  });

  const anomalous = () => decided.filter((d) => d.verdict === 'anomalous');
  const anomalies = () => fetch(new URL('/api/anomalies?limit=200', dashboard!.url)).then((r) => r.json() as Promise<{ latest: Entry[]; passed: Entry[] }>);

  it('keeps each anomalous camera frame as a PNG of the pixels decided, named by the sha256 its audit row holds', async () => {
    expect(anomalous().length).toBeGreaterThan(0);
    expect(anomalous().length).toBeLessThan(decided.length);
    const kept = readdirSync(framesDir).filter((f) => f.endsWith('.png'));
    expect(kept).toHaveLength(anomalous().length);
    const conn = openAuditDbReadOnly(auditFile);
    const rows = queryDecisions(conn, {}, { limit: 1000 });
    conn.close();
    for (const d of anomalous()) {
      const sha = rows.find((r) => r.frameId === d.id)!.inputSha256!;
      const file = join(framesDir, `${sha}.png`);
      expect(sha256Hex(readFileSync(file))).toBe(sha);
      expect(await grayPixels(readFileSync(file))).toEqual({ data: d.pixels, width: 64, height: 64, channels: 1 });
      expect(existsSync(join(framesDir, `${sha}.map.json`))).toBe(true);
    }
  });

  it('the dashboard shows each camera frame\'s own pixels as its thumbnail, the heatmap over it, and ids that tell frames apart', async () => {
    // Thumbnails are made aside, one at a time: poll until every frame has one.
    let api = await anomalies();
    while ([...api.latest, ...api.passed].some((e) => e.thumbnail === null)) {
      await new Promise((r) => setTimeout(r, 50));
      api = await anomalies();
    }
    expect(api.latest.map((e) => e.frameId)).toEqual(anomalous().map((d) => d.id).reverse());
    expect(api.latest.length + api.passed.length).toBe(decided.length);
    for (const e of [...api.latest, ...api.passed]) {
      const frame = decided.find((d) => d.id === e.frameId)!;
      // A 64x64 frame is its own thumbnail: the very pixels decided, not a black square.
      expect(e.thumbnail).toMatch(/^data:image\/png;base64,/);
      expect((await grayPixels(Buffer.from(e.thumbnail!.split(',')[1], 'base64'))).data).toEqual(frame.pixels);
      expect(e.inputSha256).toMatch(/^[0-9a-f]{64}$/);
    }

    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
    await page.goto(dashboard!.url);
    const shown = Math.min(anomalous().length, 20);
    await page.locator('#anomalies tbody tr .overlay img.thumb').nth(shown - 1).waitFor();
    const rows = (await page.evaluate(`[...document.querySelectorAll('#anomalies tbody tr')].map((tr) => ({
      frameId: tr.dataset.frameId,
      name: tr.querySelector('td.frame').textContent,
      layers: [...tr.querySelectorAll('.overlay img')].map((img) => img.className),
    }))`)) as Array<{ frameId: string; name: string; layers: string[] }>;
    expect(rows).toHaveLength(shown);
    for (const r of rows) {
      expect(r.layers).toEqual(['thumb', 'heat']);
      // cam-1@<pts>: the timestamp is what tells one camera frame from the next.
      expect(r.name).toBe(r.frameId);
    }
    expect(new Set(rows.map((r) => r.name)).size).toBe(shown);
  });

  it('a verdict on the dashboard exports that exact picture as a PNG, and the factory\'s loader takes the data set', async () => {
    const api = await anomalies();
    const shown = new Map([...api.latest, ...api.passed].map((e) => [e.frameId, e]));
    // The operator judges every frame by what it shows: anomalies kept on disk, and frames passed as good that only
    // the dashboard holds.
    for (const d of decided) {
      const body = { frameId: d.id, inputSha256: shown.get(d.id)!.inputSha256, reviewer: 'anna', ...(d.truth === 'good' ? { verdict: 'good' } : { verdict: 'defect', kind: d.truth }) };
      const res = await fetch(new URL('/api/review', dashboard!.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status).toBe(201);
      expect((await res.json()) as { bytes: string | null }).toMatchObject({ bytes: expect.stringContaining(join('frames', 'reviewed')) });
    }

    const dataset = join(tmp.path, 'dataset');
    const exported = sgmoe('audit', 'export', '--db', auditFile, '--reviewed', '--as-dataset', dataset);
    expect(exported.status).toBe(0);
    const result = JSON.parse(exported.stdout) as { written: Record<string, number>; missing: unknown[] };
    expect(result.missing).toEqual([]);
    expect(result.written).toEqual({ 'train/good': 44, 'test/hole': 2, 'test/paste': 2, 'test/scratch': 2 });
    // Each file is the picture the node decided on, traced to its frame by reviews.json.
    const { files } = JSON.parse(readFileSync(join(dataset, 'reviews.json'), 'utf8')) as { files: Array<{ file: string; frameId: string }> };
    expect(files).toHaveLength(decided.length);
    for (const f of files) {
      expect(f.file).toMatch(/\.png$/);
      expect(await grayPixels(readFileSync(join(dataset, f.file)))).toEqual({ data: decided.find((d) => d.id === f.frameId)!.pixels, width: 64, height: 64, channels: 1 });
    }

    const loader = [
      'import json, sys',
      `sys.path[:0] = [${JSON.stringify(join(ROOT, 'scripts/factory/anomaly'))}, ${JSON.stringify(join(ROOT, 'scripts/factory'))}]`,
      'import images',
      'd = images.load(sys.argv[1])',
      'print(json.dumps({"train": len(d.train.names), "test": sorted(set(d.test_kinds)), "colorspace": d.colorspace, "shape": list(d.train.pixels.shape[1:]), "unreadable": d.unreadable(), "copies": d.copies}))',
    ].join('\n');
    const loaded = spawnSync(PYTHON, ['-c', loader, dataset], { encoding: 'utf8' });
    expect(loaded.stderr).toBe('');
    expect(JSON.parse(loaded.stdout)).toEqual({ train: 44, test: DEFECTS, colorspace: 'gray', shape: [64, 64, 1], unreadable: [], copies: [] });
  });
});
