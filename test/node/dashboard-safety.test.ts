import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PushSource } from '../../src/ingest/sources/push';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode, type CreatedNode } from '../../src/node/create';
import { startDashboard, type Dashboard, type RecentEntry } from '../../src/node/dashboard';
import { rawRequest } from '../helpers/http';
import { BUNDLED } from '../helpers/package';
import { SAMPLES, SAMPLE_NAMES } from './sample-node';

const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28" fill="red"/></svg>');

let camera: PushSource;
let created: CreatedNode;
let dashboard: Dashboard;
let running: Promise<void>;

beforeAll(async () => {
  camera = new PushSource('camera');
  created = await createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1 }), { extraSources: [{ source: camera, preprocess: {} }] });
  running = created.node.run();
  dashboard = await startDashboard(created.node, { port: 0 });
});

afterAll(async () => {
  await dashboard.close();
  camera.end();
  await running;
  await created.node.stop();
});

/** A GET with the Host header a browser would send for `host`. */
const statusWithHost = (host: string) => rawRequest(dashboard.url, 'GET', '/api/snapshot', { host }).then((a) => a.status);

describe('the dashboard against hostile pages and frames', () => {
  it('answers only requests whose Host names the address it is bound to (no DNS rebinding)', async () => {
    const { port } = new URL(dashboard.url);
    expect(await statusWithHost(`127.0.0.1:${port}`)).toBe(200);
    expect(await statusWithHost(`localhost:${port}`)).toBe(200);
    expect(await statusWithHost(`attacker.example:${port}`)).toBe(403);
    expect(await statusWithHost(`192.168.1.20:${port}`)).toBe(403);
  });

  it('makes no thumbnail of a frame ingest refused (an SVG never reaches librsvg), and still of the next good one', async () => {
    const rejected = new Promise<void>((resolve) => created.node.once('rejected', () => resolve()));
    await camera.push({ id: 'hostile-svg', bytes: SVG });
    await rejected;
    const decided = new Promise<void>((resolve) => created.node.once('decision', () => resolve()));
    await camera.push({ id: 'good-png', bytes: readFileSync(join(SAMPLES, SAMPLE_NAMES[0])) });
    await decided;

    // The page polls too: the thumbnail is made aside, shortly after the entry appears.
    let entries: RecentEntry[] = [];
    for (let tries = 0; tries < 200 && entries.find((e) => e.frameId === 'good-png')?.thumbnail == null; tries++) {
      if (tries > 0) await new Promise((r) => setTimeout(r, 50));
      entries = ((await (await fetch(new URL('/api/decisions', dashboard.url))).json()) as { decisions: RecentEntry[] }).decisions;
    }
    expect(entries.find((e) => e.frameId === 'good-png')?.thumbnail).toMatch(/^data:image\/png;base64,/);
    const svg = entries.find((e) => e.frameId === 'hostile-svg');
    expect(svg).toMatchObject({ status: 'rejected', error: { code: 'E_FRAME_FORMAT' }, thumbnail: null });
  });
});
