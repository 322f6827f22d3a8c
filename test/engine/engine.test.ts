import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Decision } from '../../src/engine/decision';
import { Engine } from '../../src/engine/engine';
import { loadDeviceProfile } from '../../src/engine/profile';
import { runSelftest } from '../../src/engine/selftest-run';
import { verifyPackage } from '../../src/engine/verify';
import { loadPackage } from '../../src/model/package';
import { loadSelftest, type Selftest } from '../../src/model/selftest';
import { BUNDLED, copyPackage, readManifest, sha256Of, writeManifest } from '../helpers/package';
import { tempDir } from '../helpers/tmp';

const ONE_THREAD = { threads: { intraOp: 1, interOp: 1 } };

let engine: Engine;
let selftest: Selftest;
let inputs: Float32Array[];
const tmp = tempDir();

beforeAll(async () => {
  engine = await Engine.load(BUNDLED, ONE_THREAD);
  selftest = await loadSelftest(join(BUNDLED, 'selftest.json'));
  inputs = selftest.cases.map((c) => Float32Array.from(c.input));
});

afterAll(async () => {
  await engine.dispose();
  tmp.cleanup();
});

afterEach(() => {
  engine.configure({ ...selftest.routing, mode: 'moe', forcedExpert: null });
});

describe('golden parity with the factory (PyTorch)', () => {
  it('every part is within the tolerance and every decision, top-1 and top-2, is identical', async () => {
    const report = await runSelftest(engine, selftest);
    expect(report.failures).toEqual([]);
    expect(report.cases).toBeGreaterThanOrEqual(16);
    for (const diff of Object.values(report.maxAbsDiff)) expect(diff).toBeLessThanOrEqual(1e-4);
    expect(Object.keys(report.maxAbsDiff)).toEqual(expect.arrayContaining(['trunk', 'base', 'gate', 'expert 0']));
  });

  it('covers both the early-exit path and the expert path, with the MACs each one spends', async () => {
    const parts = engine.manifest.parts;
    const decisions = await engine.inferBatch(inputs);
    const exits = decisions.filter((d) => d.earlyExit);
    const routed = decisions.filter((d) => !d.earlyExit);
    expect(exits.length).toBeGreaterThan(0);
    expect(routed.length).toBeGreaterThan(0);
    for (const d of exits) {
      expect(d.expert).toBeNull();
      expect(d.baseConfidence).toBeGreaterThanOrEqual(selftest.routing.threshold);
      expect(d.macs).toBe(parts.trunk.macs + parts.base.macs);
      expect(d.probabilities[d.labelIndex]).toBeCloseTo(d.baseConfidence, 12);
    }
    for (const d of routed) {
      expect(d.expert).not.toBeNull();
      expect(d.baseConfidence).toBeLessThan(selftest.routing.threshold);
      expect(d.gate).toHaveLength(parts.experts.length);
      expect(d.macs).toBe(parts.trunk.macs + parts.base.macs + parts.gate.macs + parts.experts[d.expert!].macs);
    }
  });

  it('every decision carries timings, providers, the model and the frame id', async () => {
    const d = await engine.infer(inputs[0], 'frame-42');
    expect(d.frameId).toBe('frame-42');
    expect(d.model).toEqual({ name: engine.manifest.name, version: engine.manifest.version });
    expect(d.providers).toMatchObject({ trunk: 'cpu', base: 'cpu' });
    expect(d.timingsUs.trunk).toBeGreaterThan(0);
    expect(d.timingsUs.total).toBeCloseTo(d.timingsUs.trunk + d.timingsUs.base + d.timingsUs.gate + d.timingsUs.expert, 6);
    expect(d.label).toBe(engine.manifest.labels[d.labelIndex]);
  });
});

describe('batches', () => {
  it('a batch gives the same decisions as one-by-one', async () => {
    const single: Decision[] = [];
    for (const t of inputs) single.push(await engine.infer(t));
    const batched = await engine.inferBatch(inputs);
    batched.forEach((b, i) => {
      expect(b.labelIndex).toBe(single[i].labelIndex);
      expect(b.experts).toEqual(single[i].experts);
      expect(b.earlyExit).toBe(single[i].earlyExit);
      b.probabilities.forEach((p, c) => expect(p).toBeCloseTo(single[i].probabilities[c], 5));
    });
  });

  it('runs each expert only for the samples routed to it, none for early exits', async () => {
    const before = engine.stats();
    const decisions = await engine.inferBatch(inputs);
    const after = engine.stats();
    const runs = after.expertRuns.map((r, e) => r - before.expertRuns[e]);
    const routedTo = runs.map((_, e) => decisions.filter((d) => d.experts.includes(e)).length);
    expect(runs).toEqual(routedTo);
    expect(runs.reduce((a, b) => a + b, 0)).toBe(decisions.filter((d) => !d.earlyExit).length);
  });

  it('rejects a tensor of the wrong size with E_INPUT_SHAPE, and goes on working', async () => {
    await expect(engine.infer(new Float32Array(10))).rejects.toMatchObject({ code: 'E_INPUT_SHAPE' });
    await expect(engine.infer(inputs[0])).resolves.toMatchObject({ labelIndex: selftest.cases[0].decision.label });
  });
});

describe('run-time knobs', () => {
  it('threshold above 1 sends every sample to an expert, threshold 0 exits every sample early', async () => {
    engine.configure({ threshold: 1.000001 });
    expect((await engine.inferBatch(inputs)).every((d) => !d.earlyExit && d.expert !== null)).toBe(true);
    engine.configure({ threshold: 0 });
    expect((await engine.inferBatch(inputs)).every((d) => d.earlyExit && d.expert === null)).toBe(true);
  });

  it('base-only mode runs neither gate nor experts', async () => {
    engine.configure({ mode: 'base-only' });
    const before = engine.stats().expertRuns.reduce((a, b) => a + b, 0);
    const decisions = await engine.inferBatch(inputs);
    expect(engine.stats().expertRuns.reduce((a, b) => a + b, 0)).toBe(before);
    for (const d of decisions) {
      expect(d).toMatchObject({ expert: null, earlyExit: false, gate: [] });
      expect(d.macs).toBe(engine.manifest.parts.trunk.macs + engine.manifest.parts.base.macs);
    }
  });

  it('a forced expert bypasses the gate for every routed sample', async () => {
    const last = engine.manifest.parts.experts.length - 1;
    engine.configure({ threshold: 1.000001, forcedExpert: last });
    expect((await engine.inferBatch(inputs)).every((d) => d.expert === last && d.experts.length === 1)).toBe(true);
  });

  it('a compute budget picks the most accurate calibrated threshold that fits it', () => {
    const points = engine.manifest.calibration.points;
    const budget = [...points.map((p) => p.meanMacs)].sort((a, b) => a - b)[Math.floor(points.length / 2)];
    const chosen = engine.setComputeBudget(budget);
    expect(chosen.meanMacs).toBeLessThanOrEqual(budget);
    expect(points.filter((p) => p.meanMacs <= budget).every((p) => p.accuracy! <= chosen.accuracy!)).toBe(true);
    expect(engine.getSettings().threshold).toBe(chosen.threshold);
  });

  it('an unreachable budget or an invalid setting is refused with a stable code and changes nothing', () => {
    const before = engine.getSettings();
    expect(() => engine.setComputeBudget(1)).toThrow(expect.objectContaining({ code: 'E_BUDGET_UNREACHABLE' }));
    expect(() => engine.configure({ topK: 99 })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
    expect(() => engine.configure({ forcedExpert: -1 })).toThrow(expect.objectContaining({ code: 'E_CONFIG_INVALID' }));
    expect(engine.getSettings()).toEqual(before);
  });
});

describe('expert cache', () => {
  it('under a budget smaller than all experts, evicts least recently used experts and decides identically', async () => {
    const pkg = await loadPackage(BUNDLED);
    const profile = await loadDeviceProfile('x86_64-cpu');
    const oneExpertMB = Math.max(...pkg.experts.map((e) => e.bytes)) / 2 ** 20;
    const lean = await Engine.load(pkg, {
      ...ONE_THREAD,
      profile: { ...profile, experts: { loading: 'lazy', budgetMB: oneExpertMB * 1.5 } },
    });
    try {
      expect(lean.stats().cache.loads).toBe(0);
      lean.configure({ threshold: 1.000001 });
      engine.configure({ threshold: 1.000001 });
      const expected = await engine.inferBatch(inputs);
      const actual: Decision[] = [];
      for (const t of inputs) actual.push(await lean.infer(t));
      actual.forEach((d, i) => {
        expect(d.experts).toEqual(expected[i].experts);
        expect(d.labelIndex).toBe(expected[i].labelIndex);
        d.probabilities.forEach((p, c) => expect(p).toBeCloseTo(expected[i].probabilities[c], 5));
      });
      const { cache } = lean.stats();
      const distinctExperts = new Set(expected.map((d) => d.expert)).size;
      expect(distinctExperts).toBeGreaterThan(1);
      expect(cache.resident.length).toBe(1);
      expect(cache.evictions).toBeGreaterThan(0);
      expect(cache.loads).toBe(cache.evictions + 1);
    } finally {
      await lean.dispose();
    }
  });
});

describe('execution providers', () => {
  it('a profile asking for TensorRT then CUDA on this CPU-only build falls back to CPU and records why', async () => {
    const lean = await Engine.load(BUNDLED, { ...ONE_THREAD, profile: await loadDeviceProfile('jetson-orin-nano'), warmup: false });
    try {
      for (const placement of Object.values(lean.placements)) {
        expect(placement.provider).toBe('cpu');
        expect(placement.attempts.map((a) => [a.provider, a.ok])).toEqual([
          ['tensorrt', false],
          ['cuda', false],
          ['cpu', true],
        ]);
        expect(placement.attempts[0].reason).toMatch(/tensorrt/i);
      }
      expect(Object.keys(lean.placements)).toHaveLength(3 + lean.manifest.parts.experts.length);
    } finally {
      await lean.dispose();
    }
  });
});

describe('package integrity', () => {
  const fresh = (name: string) => copyPackage(join(tmp.path, name));

  it('a tampered part fails with E_HASH_MISMATCH naming the part', async () => {
    const dir = fresh('tampered');
    copyFileSync(join(dir, 'experts', 'expert-01.onnx'), join(dir, 'experts', 'expert-00.onnx'));
    await expect(Engine.load(dir, ONE_THREAD)).rejects.toMatchObject({ code: 'E_HASH_MISMATCH', details: { part: 'expert-00' } });
  });

  it('a missing expert file fails with E_PART_MISSING', async () => {
    const dir = fresh('missing');
    rmSync(join(dir, 'experts', 'expert-01.onnx'));
    await expect(Engine.load(dir, ONE_THREAD)).rejects.toMatchObject({ code: 'E_PART_MISSING', details: { part: 'expert-01' } });
  });

  it('a part whose output has the wrong width fails with E_SHAPE_MISMATCH', async () => {
    const dir = fresh('wrong-width');
    const manifest = readManifest(dir);
    // The gate's output is K wide, not L: put it where an expert belongs, correctly hashed.
    copyFileSync(join(dir, manifest.parts.gate.file), join(dir, 'experts', 'expert-00.onnx'));
    manifest.parts.experts[0].sha256 = sha256Of(join(dir, 'experts', 'expert-00.onnx'));
    writeManifest(dir, manifest);
    await expect(Engine.load(dir, ONE_THREAD)).rejects.toMatchObject({ code: 'E_SHAPE_MISMATCH' });
  });

  it('a manifest that promises more labels than the base gives fails with E_SHAPE_MISMATCH', async () => {
    const dir = fresh('more-labels');
    const manifest = readManifest(dir);
    manifest.labels.push('Extra');
    writeManifest(dir, manifest);
    await expect(Engine.load(dir, ONE_THREAD)).rejects.toThrow(/part base: output "logits" has shape \[N,\d+\], expected \[N,\d+\]/);
  });

  it('an invalid manifest fails with E_MANIFEST_INVALID listing the problems', async () => {
    const dir = fresh('bad-manifest');
    const manifest = readManifest(dir) as unknown as Record<string, unknown>;
    delete manifest.labels;
    (manifest.routing as { topK: number }).topK = 0;
    writeManifest(dir, manifest as never);
    await expect(loadPackage(dir)).rejects.toMatchObject({ code: 'E_MANIFEST_INVALID', message: expect.stringMatching(/labels.*routing\.topK|routing\.topK.*labels/) });
  });

  it('verifyPackage passes the bundled package and names the failed check of a tampered one', async () => {
    expect((await verifyPackage(BUNDLED, ONE_THREAD)).ok).toBe(true);
    const dir = fresh('verify-tampered');
    copyFileSync(join(dir, 'base.onnx'), join(dir, 'trunk.onnx'));
    const report = await verifyPackage(dir, ONE_THREAD);
    expect(report.ok).toBe(false);
    expect(report.checks.at(-1)).toMatchObject({ name: 'sha256', ok: false, code: 'E_HASH_MISMATCH' });
  });
});
