import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { tempDir } from '../helpers/tmp';

const FACTORY = resolve(__dirname, '..', '..', 'scripts', 'factory', 'main.py');
const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** `count` noisy gray PNGs of width x height in DIR/train/good. */
async function goodImages(dir: string, count: number, size: (i: number) => [number, number]): Promise<void> {
  const folder = join(dir, 'train', 'good');
  mkdirSync(folder, { recursive: true });
  for (let i = 0; i < count; i++) {
    const [width, height] = size(i);
    const pixels = Buffer.from(Array.from({ length: width * height }, (_, p) => (p * 31 + i * 17) % 256));
    await sharp(pixels, { raw: { width, height, channels: 1 } }).png().toFile(join(folder, `${String(i).padStart(3, '0')}.png`));
  }
}

function factory(data: string, ...extra: string[]) {
  const out = join(data, 'package');
  const run = spawnSync('/usr/bin/python3', [FACTORY, '--task', 'anomaly', '--data', data, '--out', out, ...extra], { encoding: 'utf8' });
  return { status: run.status, stderr: run.stderr, out };
}

describe('anomaly factory input checks', () => {
  it('a good-images folder with too few images stops with a message naming the minimum and the count', async () => {
    const data = join(tmp.path, 'few');
    await goodImages(data, 12, () => [28, 28]);
    const run = factory(data);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/at least 40 readable good images expected in .*train\/good, found 12/);
    expect(existsSync(run.out)).toBe(false);
  });

  it('good images of mixed sizes without --size stop with the sizes found and the way out', async () => {
    const data = join(tmp.path, 'mixed');
    await goodImages(data, 45, (i) => (i % 3 === 0 ? [32, 24] : [28, 28]));
    const run = factory(data);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('images of one size expected without --size, found 2 sizes');
    expect(run.stderr).toContain('32x24');
    expect(run.stderr).toContain('--size WxH');
    expect(existsSync(run.out)).toBe(false);
  });

  it('no train/good folder stops with the expected layout', () => {
    const run = factory(join(tmp.path, 'empty'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('a folder of good images expected at');
    expect(run.stderr).toContain('DIR/train/good/');
  });
});
