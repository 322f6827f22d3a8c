import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openAuditDbReadOnly } from '../../src/audit/open';
import { listEvents } from '../../src/audit/query';
import { Engine } from '../../src/engine/engine';
import { thresholdForFalseAlarmRate } from '../../src/engine/tasks/anomaly';
import { nodeCommands } from '../../src/node/commands';
import { parseNodeConfig } from '../../src/node/config';
import { createEdgeNode } from '../../src/node/create';
import { ThresholdCommand } from '../../src/node/threshold';
import { BUNDLED, copyPackage, readManifest, writeManifest } from '../helpers/package';
import { tempDir } from '../helpers/tmp';
import { auditedHost, variant } from '../fleet/support';
import { sampleNode } from './sample-node';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe('an early-exit threshold set at run time', () => {
  it('survives a model swap; the reply and the audit events say which value is active and why', async () => {
    const audit = join(tmp.path, 'audit.db');
    const node = await sampleNode({ sources: [], audit: { file: audit } });
    const packaged = node.node.engine.getSettings().threshold;
    const reply = nodeCommands(node.node, () => ({})).setThreshold(0.42, { id: 'st-1', keyId: null }) as Record<string, unknown>;
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

describe('an anomaly false-alarm rate set at run time', () => {
  const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');

  it('stays a rate over model swaps: each anomaly package turns it into its own threshold; a package that cannot take it keeps its own, and the audit log says why', async () => {
    const audit = join(tmp.path, 'anomaly-audit.db');
    const { node } = await createEdgeNode(parseNodeConfig({ model: LINE, threads: 1, once: true, sources: [], audit: { file: audit } }));
    const packaged = readManifest(LINE).calibration.anomaly!;
    const commands = nodeCommands(node, () => ({}));
    expect(commands.getConfig()).toMatchObject({ anomalyThreshold: packaged.threshold, falseAlarmRate: packaged.falseAlarmRate });
    const reply = node.setFalseAlarmRate(0.005);
    // The rate in force is shown where the threshold is (the config's own routing section still says what it said).
    expect(commands.getConfig()).toMatchObject({ anomalyThreshold: reply.threshold, falseAlarmRate: 0.005 });
    expect(node.snapshot()).toMatchObject({ anomalyThreshold: reply.threshold, falseAlarmRate: 0.005 });
    expect(reply).toEqual({ falseAlarmRate: 0.005, threshold: thresholdForFalseAlarmRate(packaged, 0.005), keptOnModelSwap: true });

    // A new version whose good scores lie higher: its own threshold for the same rate, not 1.0.0's and not its calibrated one.
    const dir = copyPackage(join(tmp.path, 'line-1.1.0'), LINE);
    const manifest = readManifest(dir);
    manifest.version = '1.1.0';
    const calibration = manifest.calibration.anomaly!;
    calibration.quantiles = calibration.quantiles.map((p) => ({ ...p, score: p.score + 1 }));
    calibration.threshold += 1;
    writeManifest(dir, manifest);
    const next = await Engine.load(dir, { threads: { intraOp: 1 } });
    await (await node.swap(next)).previous.dispose();
    const expected = thresholdForFalseAlarmRate(calibration, 0.005);
    expect(expected).not.toBeCloseTo(calibration.threshold, 3);
    expect(commands.getConfig()).toMatchObject({ anomalyThreshold: expected, falseAlarmRate: 0.005, model: { version: '1.1.0' } });

    // A classification package has no false-alarm rate: swapped in all the same.
    await (await node.swap(await Engine.load(BUNDLED, { threads: { intraOp: 1 } }))).previous.dispose();
    expect(node.engine.task.name).toBe('classification');
    await node.stop();

    const db = openAuditDbReadOnly(audit);
    try {
      const changes = listEvents(db, {}, ['config_changed']);
      expect(changes.map((e) => e.details)).toEqual([
        expect.objectContaining({ rate: 0.005, threshold: reply.threshold }),
        expect.objectContaining({ rate: 0.005, threshold: expected, source: 'command', model: { name: manifest.name, version: '1.1.0' } }),
        expect.objectContaining({ rate: 0.005, source: 'command', model: { name: readManifest(BUNDLED).name, version: readManifest(BUNDLED).version } }),
      ]);
      expect(changes[2].message).toMatch(/not kept over .*: the rate: expected a package of task anomaly, found task classification; its calibrated threshold applies/);
      expect(changes[2].details).not.toHaveProperty('threshold');
    } finally {
      db.close();
    }
  });

  it('a rate too small for the package\'s held-out good images is taken with a caution saying so', async () => {
    const { node } = await createEdgeNode(parseNodeConfig({ model: LINE, threads: 1, once: true, sources: [] }));
    const held = readManifest(LINE).calibration.anomaly!.heldOutGood;
    expect(node.setFalseAlarmRate(0.001)).toMatchObject({
      falseAlarmRate: 0.001,
      caution: `only ${held} held-out good images calibrated this package: about ${(held * 0.001).toFixed(1)} of them lie above the threshold for 0.001, so the rate on the line may differ a lot`,
    });
    expect(node.setFalseAlarmRate(0.01)).not.toHaveProperty('caution');
    await node.stop();
  });

  it('routing.falseAlarmRate in the config sets the operating point at start (over restarts); refused for a package of another task', async () => {
    const { node } = await createEdgeNode(parseNodeConfig({ model: LINE, threads: 1, once: true, sources: [], routing: { falseAlarmRate: 0.02 } }));
    expect(nodeCommands(node, () => ({})).getConfig()).toMatchObject({ anomalyThreshold: thresholdForFalseAlarmRate(readManifest(LINE).calibration.anomaly!, 0.02), falseAlarmRate: 0.02 });
    await node.stop();
    await expect(createEdgeNode(parseNodeConfig({ model: BUNDLED, threads: 1, once: true, sources: [], routing: { falseAlarmRate: 0.02 } }))).rejects.toMatchObject({
      code: 'E_CONFIG_INVALID',
      message: expect.stringContaining('routing.falseAlarmRate: expected a package of task anomaly'),
    });
  });
});

describe('who changed a threshold', () => {
  const LINE = resolve(__dirname, '..', '..', 'models', 'fashion-line-anomaly');

  it('each change by command is audited with the request id and the operator key that authorised it', async () => {
    const dir = join(tmp.path, 'who');
    mkdirSync(dir);
    const engine = await Engine.load(LINE, { threads: { intraOp: 1 } });
    const { audit } = auditedHost(dir, engine);
    const command = new ThresholdCommand(audit);
    const previous = engine.getSettings().threshold;
    command.set(engine, 0.7, { id: 'st-9', keyId: '0123456789abcdef' });
    const { threshold } = command.setFalseAlarmRate(engine, 0.005, { id: 'far-9', keyId: 'fedcba9876543210' });
    audit.close();
    await engine.dispose();

    const db = openAuditDbReadOnly(join(dir, 'audit.db'));
    try {
      expect(listEvents(db, {}, ['config_changed']).map((e) => e.details)).toEqual([
        expect.objectContaining({ value: 0.7, previous, correlationId: 'st-9', keyId: '0123456789abcdef' }),
        expect.objectContaining({ rate: 0.005, threshold, correlationId: 'far-9', keyId: 'fedcba9876543210' }),
      ]);
      // Found by the request id, as `sgmoe audit events --id` finds an update's steps.
      expect(listEvents(db, {}, undefined, 'st-9')).toHaveLength(1);
    } finally {
      db.close();
    }
  });
});
