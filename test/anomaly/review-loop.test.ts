import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { openAuditDbReadOnly, queryDecisions } from '../../src/audit';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { sgmoe } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { auditCli as audit } from '../helpers/audit-cli';

const ROOT = resolve(__dirname, '..', '..');
const LINE = join(ROOT, 'models', 'texture-line-anomaly');
const tmp = tempDir('sgmoe-review-loop-');
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

    // 56 good patches spread over the three textures, and 6 each of three defect kinds.
    const inbox = join(tmp.path, 'inbox');
    mkdirSync(inbox, { recursive: true });
    const truth = new Map<string, string>();
    const goods = readdirSync(join(textures, 'train', 'good')).sort();
    for (let i = 0; i < 56; i++) {
      const name = goods[Math.floor((i * goods.length) / 56)];
      copyFileSync(join(textures, 'train', 'good', name), join(inbox, `good-${name}`));
      truth.set(`good-${name}`, 'good');
    }
    for (const kind of ['hole', 'paste', 'scratch']) {
      for (const name of readdirSync(join(textures, 'test', kind)).sort().slice(0, 6)) {
        copyFileSync(join(textures, 'test', kind, name), join(inbox, `${kind}-${name}`));
        truth.set(`${kind}-${name}`, kind);
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
    // The files are the frames' own bytes.
    const hole = readdirSync(join(dataset, 'test', 'hole'))[0];
    const sources = readdirSync(join(textures, 'test', 'hole')).map((f) => readFileSync(join(textures, 'test', 'hole', f)));
    expect(sources.some((b) => b.equals(readFileSync(join(dataset, 'test', 'hole', hole))))).toBe(true);

    // The factory accepts the folder: a real (small: 2-3 s) training run, then the package verifies.
    const pkg = join(tmp.path, 'retrained');
    const trained = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts/factory/main.py'), '--task', 'anomaly', '--data', dataset, '--out', pkg, '--experts', '3', '--stationary'], { encoding: 'utf8' });
    expect(trained.stderr).toContain(`${result.written['train/good']} good training images`);
    expect(trained.status).toBe(0);
    expect(existsSync(join(pkg, 'manifest.json'))).toBe(true);
    const verified = sgmoe('model', 'verify', pkg);
    expect(verified.status).toBe(0);
  });
});
