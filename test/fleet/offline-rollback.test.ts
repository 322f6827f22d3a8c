import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openAuditDb, openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents } from '../../src/audit/query';
import { PackageStore } from '../../src/fleet/store';
import { copyPackage } from '../helpers/package';
import { sgmoeAsync } from '../helpers/cli';
import { tempDir } from '../helpers/tmp';
import { variant } from './support';

const tmp = tempDir('sgmoe-offline-rollback-');
afterAll(() => tmp.cleanup());

test('sgmoe model rollback --config on a stopped device moves current back and records the rollback in its audit log with the id', async () => {
  // The store as a stopped device leaves it after an update: 1.1.0 current, 1.0.0 in its history.
  const root = join(tmp.path, 'fleet');
  const store = new PackageStore(root);
  await store.adopt(copyPackage(join(tmp.path, 'v1')));
  await store.install(variant(join(tmp.path, 'v2'), (m) => (m.version = '1.1.0')), 'fashion-sgmoe-1.1.0');
  await store.setCurrent('fashion-sgmoe-1.1.0');
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
