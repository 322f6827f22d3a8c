import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { generateSigningKey } from '../../src/fleet/keys';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { BUNDLED } from '../helpers/package';
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

describe('a stop that fails to let go of a part', () => {
  it('still lets go of the rest (the audit log\'s lock among them), logs and rejects with the failure; the next node in this process starts', async () => {
    const dir = join(tmp.path, 'closers');
    const keys = await generateSigningKey(join(dir, 'operator'));
    const file = join(dir, 'data', 'audit.db');
    const config = parseNodeConfig({
      model: BUNDLED,
      threads: 1,
      once: true,
      sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 1)}` }],
      audit: { file },
      fleet: { root: join(dir, 'device'), trustedKeys: [keys.publicKeyPath] },
    });
    const lines: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const first = await createEdgeNode(config, { logger });
    await first.node.run();
    // The package store's lock, let go before the audit log's, can no longer be read: its release throws.
    const storeLock = join(dir, 'device', 'node.lock');
    rmSync(storeLock);
    mkdirSync(storeLock);
    await expect(first.node.stop()).rejects.toMatchObject({ code: 'E_FILE_UNREADABLE', message: expect.stringContaining(storeLock) });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'a part of the node failed to close', err: expect.stringContaining(storeLock) }));
    expect(existsSync(`${file}.lock`)).toBe(false);

    rmSync(storeLock, { recursive: true }); // the operator clears it
    const next = await createEdgeNode(config);
    await next.node.run();
    await next.node.stop();
  });
});
