import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/mqtt';
import { hotFolder, sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('one node per audit log', () => {
  it('a second node on the same audit log is refused, from this process or another, naming the holder; a lock left by a killed node does not keep the next one out', async () => {
    const file = join(tmp.path, 'data', 'audit.db');
    const config = { sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox'), 2)}` }], audit: { file } };
    const first = await sampleNode(config);
    await expect(sampleNode(config)).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining('another node of this process holds this audit log') });
    await first.node.run();
    await first.node.stop();
    expect(first.decisions).toHaveLength(2);
    expect(existsSync(`${file}.lock`)).toBe(false);

    // Another process holds it (as a second `sgmoe run` on the same config would), then dies without letting go.
    const other = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fleet', 'lock-contender.ts'), `${file}.lock`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    const said: string[] = [];
    other.stdout.on('data', (d: Buffer) => said.push(...d.toString().trim().split('\n')));
    try {
      await waitUntil(() => said.includes('ready'), 30_000, 'the other process to load');
      other.stdin.write('go\n');
      await waitUntil(() => said.length === 2, 30_000, 'the other process to take the lock');
      expect(said[1]).toBe('held');
      await expect(sampleNode(config)).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining(`another process holds this audit log: pid ${other.pid}`) });
    } finally {
      other.kill('SIGKILL');
      if (other.exitCode === null && other.signalCode === null) await once(other, 'exit');
    }
    const next = await sampleNode({ ...config, sources: [{ uri: `dir:${hotFolder(join(tmp.path, 'inbox-2'), 1)}` }] });
    await next.node.run();
    await next.node.stop();
    expect(next.decisions).toHaveLength(1);
  });
});
