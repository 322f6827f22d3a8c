import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { openAuditDbReadOnly, queryDecisions } from '../../src/audit';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { sgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { auditCli as audit } from '../helpers/audit-cli';

const ROOT = resolve(__dirname, '..', '..');
const LINE = join(ROOT, 'models', 'texture-line-anomaly');
const tmp = tempDir('sgmoe-review-loop-');
/** The encoded formats a node accepts (src/ingest/format.ts), each of which its frame store keeps byte for byte. */
const FORMATS = ['png', 'jpeg', 'webp', 'tiff', 'gif'] as const;
afterAll(() => tmp.cleanup());

/**
 * The feedback loop, end to end on real parts: texture patches (skimage's photographs, the factory's own generator)
 * through a node running the shipped texture package from a hot folder; an operator judges every frame; the export
 * is a data folder the anomaly factory trains a package from, and that package verifies.
 */
describe('review round trip', () => {
  it('hot folder -> node -> reviews -> export --reviewed --as-dataset -> the anomaly factory trains on it -> model verify passes', async () => {
    const textures = join(tmp.path, 'textures');
    const made = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/anomaly/datasets.py'), 'textures', textures], { encoding: 'utf8' });
    expect(made.status).toBe(0);

    // 56 good patches spread over the three textures, and 6 each of three defect kinds. Every fifth good patch and
    // one defect of each kind arrive in each format a node accepts (and keeps as is for review), GIF included.
    const inbox = join(tmp.path, 'inbox');
    mkdirSync(inbox, { recursive: true });
    const truth = new Map<string, string>();
    const arrive = async (from: string, name: string, format: (typeof FORMATS)[number]) => {
      const file = `${name.replace(/\.png$/, '')}.${format}`;
      if (format === 'png') copyFileSync(from, join(inbox, file));
      else await sharp(from).toFormat(format).toFile(join(inbox, file));
      return file;
    };
    const goods = readdirSync(join(textures, 'train', 'good')).sort();
    for (let i = 0; i < 56; i++) {
      const name = goods[Math.floor((i * goods.length) / 56)];
      truth.set(await arrive(join(textures, 'train', 'good', name), `good-${name}`, FORMATS[i % FORMATS.length]), 'good');
    }
    for (const kind of ['hole', 'paste', 'scratch']) {
      for (const [i, name] of readdirSync(join(textures, 'test', kind)).sort().slice(0, 6).entries()) {
        truth.set(await arrive(join(textures, 'test', kind, name), `${kind}-${name}`, FORMATS[i % FORMATS.length]), kind);
      }
    }

    const auditFile = join(tmp.path, 'data', 'audit.db');
    const config = parseNodeConfig({
      model: LINE,
      device: 'x86_64-cpu',
      threads: 1,
      sources: [{ uri: `dir:${inbox}`, name: 'line-1' }],
      // Keep every frame's bytes, so good frames can be reviewed into training images too.
      audit: { file: auditFile, frames: { keep: 'all', maxFiles: 500 } },
      once: true,
    });
    const { node } = await createEdgeNode(config);
    const frames: string[] = [];
    node.on('decision', (frame) => frames.push(frame.id));
    await node.run();
    await node.stop();
    expect(frames).toHaveLength(truth.size);

    const conn = openAuditDbReadOnly(auditFile);
    expect(queryDecisions(conn, {}, { limit: 1000 })).toHaveLength(truth.size);
    conn.close();

    // The operator judges every frame by its true kind; one through the real `sgmoe` binary.
    const kindOf = (id: string) => truth.get(basename(id.slice(0, id.lastIndexOf('@'))))!;
    const [first, ...rest] = frames;
    const cli = sgmoe('audit', 'review', '--db', auditFile, '--frame', first, '--verdict', kindOf(first) === 'good' ? 'good' : 'defect', '--by', 'anna', ...(kindOf(first) === 'good' ? [] : ['--kind', kindOf(first)]));
    expect(cli.stderr).toBe('');
    expect(JSON.parse(cli.stdout)).toMatchObject({ reviewer: 'anna', via: 'cli', bytes: expect.stringContaining(join('frames', 'reviewed')) });
    for (const id of rest) {
      const kind = kindOf(id);
      await audit('review', '--db', auditFile, '--frame', id, '--verdict', kind === 'good' ? 'good' : 'defect', '--by', 'anna', ...(kind === 'good' ? [] : ['--kind', kind]));
    }

    const dataset = join(tmp.path, 'dataset');
    const exported = sgmoe('audit', 'export', '--db', auditFile, '--reviewed', '--as-dataset', dataset, '--holdout', '0.15');
    expect(exported.status).toBe(0);
    const result = JSON.parse(exported.stdout);
    expect(result.missing).toEqual([]);
    expect(result.written['train/good'] + result.written['test/good']).toBe(56);
    expect(result.written['train/good']).toBeGreaterThanOrEqual(40);
    expect([result.written['test/hole'], result.written['test/paste'], result.written['test/scratch']]).toEqual([6, 6, 6]);
    // The files are the frames' own bytes, in the format each arrived in: every one the node accepts.
    const exportedFiles = ['train/good', 'test/good', 'test/hole', 'test/paste', 'test/scratch'].flatMap((f) => readdirSync(join(dataset, f)).map((n) => join(dataset, f, n)));
    expect(new Set(exportedFiles.map((f) => extname(f)))).toEqual(new Set(FORMATS.map((f) => `.${f}`)));
    const inboxBytes = [...truth.keys()].map((f) => readFileSync(join(inbox, 'done', f)));
    for (const file of exportedFiles) expect(inboxBytes.some((b) => b.equals(readFileSync(file)))).toBe(true);

    // The factory accepts the folder: a real (small) training run, then the package verifies.
    const pkg = join(tmp.path, 'retrained');
    const trained = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--task', 'anomaly', '--data', dataset, '--out', pkg, '--experts', '3', '--stationary'], { encoding: 'utf8' });
    // Every exported file loads (none listed unreadable or left out): the GIFs as well as the rest.
    expect(trained.stderr).toContain(`${result.written['train/good']} good training images`);
    expect(trained.stderr).not.toContain('skipped unreadable');
    expect(trained.status).toBe(0);
    expect(existsSync(join(pkg, 'manifest.json'))).toBe(true);
    const verified = sgmoe('model', 'verify', pkg);
    expect(verified.status).toBe(0);
  });
});
