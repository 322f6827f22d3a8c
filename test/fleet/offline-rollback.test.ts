import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey } from '../../src/fleet/keys';
import { openAuditDb, openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents } from '../../src/audit/query';
import { PackageStore } from '../../src/fleet/store';
import { StoreLock } from '../../src/fleet/store-lock';
import { BUNDLED, copyPackage } from '../helpers/package';
import { ROOT, sgmoeAsync, startSgmoe } from '../helpers/cli';
import { waitUntil } from '../helpers/mqtt';
import { hotFolder } from '../node/sample-node';
import { tempDir } from '../helpers/tmp';
import { variant } from './support';

const tmp = tempDir('sgmoe-offline-rollback-');
afterAll(() => tmp.cleanup());

/** The store as a device leaves it after an update: 1.1.0 current, 1.0.0 in its history. */
async function updatedStore(dir: string): Promise<PackageStore> {
  const store = new PackageStore(join(dir, 'fleet'));
  await store.adopt(copyPackage(join(dir, 'v1')));
  await store.install(variant(join(dir, 'v2'), (m) => (m.version = '1.1.0')), 'fashion-sgmoe-1.1.0');
  await store.setCurrent('fashion-sgmoe-1.1.0');
  return store;
}

test('sgmoe model rollback --config on a stopped device moves current back and records the rollback in its audit log with the id', async () => {
  const store = await updatedStore(tmp.path);
  const { root } = store;
  const audit = join(tmp.path, 'audit.db');
  openAuditDb(audit).db.close();
  const config = join(tmp.path, 'node.json');
  writeFileSync(config, JSON.stringify({ model: join(tmp.path, 'v1'), audit: { file: audit }, fleet: { root, trustedKeys: ['unused.pub'] } }));

  const run = await sgmoeAsync('model', 'rollback', '--config', config, '--id', 'cli-rb-1');
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('rolled back from fashion-sgmoe-1.1.0 to fashion-sgmoe-1.0.0 (id cli-rb-1)');
  expect(JSON.parse(readFileSync(join(root, 'current'), 'utf8')).current).toBe('fashion-sgmoe-1.0.0');
  const db = openAuditDbReadOnly(audit);
  try {
    expect(listEvents(db, {}, ['model_rolled_back']).map((e) => e.details)).toEqual([
      { correlationId: 'cli-rb-1', from: 'fashion-sgmoe-1.1.0', to: 'fashion-sgmoe-1.0.0', via: 'cli', reason: 'requested by an operator' },
    ]);
  } finally {
    db.close();
  }

  // Without an audit log to write to, the operator is told the rollback left no trace.
  await store.setCurrent('fashion-sgmoe-1.1.0');
  const bare = await sgmoeAsync('model', 'rollback', '--root', root);
  expect(bare.status).toBe(0);
  expect(bare.stderr).toContain('not recorded in an audit log');
});

test('the offline rollback refuses while a node runs on the store, and goes ahead once that node was killed', async () => {
  const dir = join(tmp.path, 'running');
  const store = await updatedStore(dir);
  const audit = join(dir, 'audit.db');
  const key = await generateSigningKey(join(dir, 'keys', 'operator'));
  const config = join(dir, 'node.json');
  writeFileSync(
    config,
    JSON.stringify({
      model: BUNDLED,
      threads: 1,
      sources: [{ uri: `dir:${hotFolder(join(dir, 'inbox'), 1)}` }],
      audit: { file: audit },
      fleet: { root: store.root, trustedKeys: [key.publicKeyPath] },
    }),
  );
  const node = startSgmoe(['run', '--config', config], { SGMOE_LOG_LEVEL: 'error' });
  const exited = new Promise<void>((resolve) => node.once('exit', () => resolve()));
  try {
    await waitUntil(() => existsSync(join(dir, 'inbox', 'done')), 60_000, 'the node deciding its first frame');

    const refused = await sgmoeAsync('model', 'rollback', '--config', config, '--id', 'cli-rb-running');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('E_STORE_IN_USE');
    expect(refused.stderr).toContain(`pid ${node.pid}`);
    expect(refused.stderr).toContain('stop the node first');
    expect(refused.stderr).toContain('sgmoe cmd rollback');
    expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.1.0', history: ['fashion-sgmoe-1.0.0'] });
  } finally {
    // A crash, as a power cut or the OOM killer leaves it: the lock stays behind, naming a process that is gone.
    node.kill('SIGKILL');
    await exited;
  }
  expect(existsSync(store.lock.path)).toBe(true);

  const run = await sgmoeAsync('model', 'rollback', '--config', config, '--id', 'cli-rb-crashed');
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(await store.pointer()).toEqual({ current: 'fashion-sgmoe-1.0.0', history: [] });
  const db = openAuditDbReadOnly(audit);
  try {
    expect(listEvents(db, {}, ['model_rolled_back']).map((e) => e.details?.correlationId)).toEqual(['cli-rb-crashed']);
  } finally {
    db.close();
  }
});

test('a lock naming a live pid with another start time (a reused pid) is stale; one of another host holds for the offline rollback only', async () => {
  const lock = new StoreLock(join(tmp.path, 'reused.lock'));
  await lock.acquire();
  const mine = JSON.parse(readFileSync(lock.path, 'utf8'));
  expect(await lock.holder()).toMatchObject({ pid: process.pid });
  await lock.acquire();

  writeFileSync(lock.path, JSON.stringify({ ...mine, startTicks: mine.startTicks - 1 }));
  expect(await lock.holder()).toBeNull();
  await lock.release();
  expect(existsSync(lock.path)).toBe(true); // not this process's: left alone
  await lock.acquire();
  await lock.release();
  expect(existsSync(lock.path)).toBe(false);

  // Another host's process cannot be checked from here: it counts as running for the offline rollback, while a node
  // starting here (its container recreated under a new host name) takes the lock over rather than stay down.
  writeFileSync(lock.path, JSON.stringify({ ...mine, host: 'another-host' }));
  expect(await lock.holder()).toMatchObject({ host: 'another-host' });
  await lock.acquire();
  expect(await lock.holder()).toMatchObject({ pid: process.pid, host: mine.host });
});

test('a lock of a killed node its parent has not reaped (a zombie: a container whose PID 1 does not reap) is stale', async () => {
  // The child exits at once; its parent sleeps without waiting for it, so it stays a zombie meanwhile.
  const parent = spawn('/usr/bin/python3', ['-c', 'import os, sys, time\npid = os.fork()\nif pid == 0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(120)']);
  try {
    const [line] = (await once(parent.stdout, 'data')) as [Buffer];
    const pid = Number(line.toString().trim());
    const stat = () => {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return text.slice(text.lastIndexOf(')') + 2).split(' ');
    };
    await waitUntil(() => stat()[0] === 'Z', 10_000, 'the child to be a zombie');
    const lock = new StoreLock(join(tmp.path, 'zombie.lock'));
    await lock.acquire();
    const mine = JSON.parse(readFileSync(lock.path, 'utf8'));
    await lock.release();
    writeFileSync(lock.path, JSON.stringify({ ...mine, pid, startTicks: Number(stat()[19]) }));
    expect(await lock.holder()).toBeNull();
    await lock.acquire();
    expect(await lock.holder()).toMatchObject({ pid: process.pid });
    await lock.release();
  } finally {
    parent.kill();
  }
});

test("a lock of another boot is stale; one of another pid namespace (a container's) is not checked here and counts as running; a live holder here refuses a second one", async () => {
  const lock = new StoreLock(join(tmp.path, 'context.lock'));
  await lock.acquire();
  const mine = JSON.parse(readFileSync(lock.path, 'utf8'));
  expect(mine).toMatchObject({ pidNamespace: expect.stringMatching(/^pid:\[\d+\]$/), bootId: expect.any(String) });

  // The same pid and start time, but written before a reboot: no process survives one.
  writeFileSync(lock.path, JSON.stringify({ ...mine, bootId: 'another-boot' }));
  expect(await lock.holder()).toBeNull();

  // A pid of another namespace means nothing here: held, for the offline rollback, whatever runs under that pid here.
  writeFileSync(lock.path, JSON.stringify({ ...mine, pid: 999_999, pidNamespace: 'pid:[1]' }));
  expect(await lock.holder()).toMatchObject({ pidNamespace: 'pid:[1]' });

  // A live process of this host and namespace (here: the test runner's parent) holds it against anyone else.
  writeFileSync(lock.path, JSON.stringify({ ...mine, pid: process.ppid, startTicks: null }));
  await expect(lock.acquire()).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining(`pid ${process.ppid}`) });
});

test('two nodes of one process on one store: the second is refused, and the first one stopping does not free the store for it behind its back', async () => {
  const path = join(tmp.path, 'in-process.lock');
  const [a, b] = [new StoreLock(path), new StoreLock(path)];
  await a.acquire();
  await expect(b.acquire()).rejects.toMatchObject({ code: 'E_STORE_IN_USE', message: expect.stringContaining('another node of this process') });
  await b.release(); // not b's: changes nothing
  expect(await a.holder()).toMatchObject({ pid: process.pid });
  await a.release();
  expect(existsSync(path)).toBe(false);
  await b.acquire();
  expect(await b.holder()).toMatchObject({ pid: process.pid });
  await b.release();
});

test('two processes replacing one stale lock at the same moment: one holds it, the other is refused', async () => {
  const path = join(tmp.path, 'contended.lock');
  // Left by a node of an earlier boot: stale, as after a power cut.
  writeFileSync(path, JSON.stringify({ pid: 1, host: hostname(), startTicks: null, pidNamespace: null, bootId: 'an-earlier-boot', since: new Date().toISOString() }));
  const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'lock-contender.ts'), path], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }));
  const lines = children.map(() => [] as string[]);
  children.forEach((child, i) => child.stdout.on('data', (d: Buffer) => lines[i].push(...d.toString().trim().split('\n'))));
  try {
    await waitUntil(() => lines.every((l) => l.includes('ready')), 30_000, 'both processes to load');
    for (const child of children) child.stdin.write('go\n');
    await waitUntil(() => lines.every((l) => l.length === 2), 30_000, 'both processes to try the lock');
    expect(lines.map((l) => l[1]).sort()).toEqual(['E_STORE_IN_USE', 'held']);
    const holder = children[lines.findIndex((l) => l[1] === 'held')];
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(holder.pid);
  } finally {
    for (const child of children) child.stdin.end();
    await Promise.all(children.map((child) => (child.exitCode === null ? once(child, 'exit') : undefined)));
  }
});
