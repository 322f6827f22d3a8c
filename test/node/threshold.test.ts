import { join } from 'node:path';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents } from '../../src/audit/query';
import { Engine } from '../../src/engine/engine';
import { nodeCommands } from '../../src/node/commands';
import { tempDir } from '../helpers/tmp';
import { variant } from '../fleet/support';
import { sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('an early-exit threshold set at run time', () => {
  it('survives a model swap; the reply and the audit events say which value is active and why', async () => {
    const audit = join(tmp.path, 'audit.db');
    const node = await sampleNode({ sources: [], audit: { file: audit } });
    const packaged = node.node.engine.getSettings().threshold;
    const reply = nodeCommands(node.node, () => ({})).setThreshold(0.42) as Record<string, unknown>;
    expect(reply).toMatchObject({ threshold: 0.42, previous: packaged, source: 'command', keptOnModelSwap: true, settings: { threshold: 0.42 } });

    // A new package with its own calibrated threshold.
    const next = await Engine.load(
      variant(join(tmp.path, 'v1.1.0'), (m) => {
        m.version = '1.1.0';
        m.routing.earlyExit.threshold = 0.97;
      }),
      { threads: { intraOp: 1 } },
    );
    const { previous } = await node.node.swap(next);
    await previous.dispose();
    expect(node.node.engine.model.version).toBe('1.1.0');
    expect(node.node.engine.getSettings().threshold).toBe(0.42);
    await node.node.stop();

    const db = openAuditDbReadOnly(audit);
    try {
      const changes = listEvents(db, {}, ['config_changed']);
      expect(changes.map((e) => e.details)).toEqual([
        expect.objectContaining({ value: 0.42, source: 'command', previous: packaged }),
        expect.objectContaining({ threshold: 0.42, source: 'command', replaced: 0.97, model: { name: next.model.name, version: '1.1.0' } }),
      ]);
      expect(changes[1].message).toMatch(/kept over .* 1\.1\.0's 0\.97/);
    } finally {
      db.close();
    }
  });
});
