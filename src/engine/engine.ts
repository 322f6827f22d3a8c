import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { SgmoeError } from '../errors';
import { silentLogger, type Logger } from '../log';
import { sampleShape, type CalibrationPoint, type Manifest } from '../model/manifest';
import { expertPartName, loadPackage, type ModelPackage, type PackagePart } from '../model/package';
import { QUICK_BUILD_WARNING, readFactoryReport } from '../model/report';
import { routeExperts, softmax } from './decide';
import type { Decision, StageTimingsUs } from './decision';
import { ExpertCache, type ExpertCacheCounters } from './expert-cache';
import type { DeviceProfile, ProviderSpec } from './profile';
import { openSession, ortSessionFactory, type Placement, type SessionFactory, type Threads } from './providers';
import { checkExpert, checkShapes } from './shapes';
import { createTask, type BaseVerdict, type BranchOutputs, type Task } from './tasks';

export interface EngineOptions {
  /** Providers, threads, expert loading and budget; without one, CPU with every core and eager experts. */
  profile?: DeviceProfile;
  /** Overrides the profile's threads (tests on 2 cores use one intra-op thread). */
  threads?: Partial<Threads>;
  createSession?: SessionFactory;
  logger?: Logger;
  /** Run one zero batch through every loaded part at load, so the first frame does not pay for lazy init. */
  warmup?: boolean;
}

/** The run-time knobs. `mode: 'base-only'` skips gate and experts; `forcedExpert` bypasses the gate (diagnostics). */
export interface RuntimeSettings {
  threshold: number;
  topK: number;
  mode: 'moe' | 'base-only';
  forcedExpert: number | null;
}

/** Raw outputs of every part for one input, for parity checks against the factory's PyTorch outputs. */
export interface PartOutputs {
  features: Float32Array;
  base: BranchOutputs;
  gateLogits: Float32Array;
  /** The gate's outputs the task reads besides its logits (`task.gateOutputs`), by name. */
  gateOutputs: BranchOutputs;
  experts: BranchOutputs[];
}

export interface EngineStats {
  samples: number;
  earlyExits: number;
  expertRuns: number[];
  cache: ExpertCacheCounters;
}

type Session = ort.InferenceSession;

const NO_OUTPUTS: BranchOutputs = Object.freeze({});
const now = (): bigint => process.hrtime.bigint();
const microsSince = (t0: bigint): number => Number(now() - t0) / 1000;

/**
 * Runs an SGMoE package: trunk, base branch, gate and only the experts a sample needs (docs/DESIGN.md, "The
 * decision"). Calls are serialised: one batch at a time keeps expert eviction safe and the cores for ONNX Runtime.
 */
export class Engine {
  readonly manifest: Manifest;
  readonly placements: Record<string, Placement>;
  readonly task: Task;
  private settings: RuntimeSettings;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly sampleShape: number[];
  private readonly sampleSize: number;
  private readonly featureSize: number;
  private samples = 0;
  private earlyExits = 0;
  private readonly expertRuns: number[];
  private disposed = false;
  private modelRef?: Readonly<{ name: string; version: string }>;
  private readonly providersByRoute: Array<Readonly<Record<string, string>>> = [];

  private constructor(
    readonly pkg: ModelPackage,
    private readonly trunk: Session,
    private readonly base: Session,
    private readonly gate: Session,
    private readonly experts: ExpertCache<Session>,
    private readonly featureShape: number[],
    placements: Record<string, Placement>,
  ) {
    this.manifest = pkg.manifest;
    this.placements = placements;
    const { input, routing } = pkg.manifest;
    this.task = createTask(pkg.manifest);
    this.sampleShape = sampleShape(input);
    this.sampleSize = this.sampleShape.reduce((a, b) => a * b, 1);
    this.featureSize = featureShape.reduce((a, b) => a * b, 1);
    this.expertRuns = pkg.experts.map(() => 0);
    this.settings = { threshold: routing.earlyExit.threshold, topK: routing.topK, mode: 'moe', forcedExpert: null };
  }

  /** Loads a package (a directory, hashed and checked, or an already loaded ModelPackage) onto the device. */
  static async load(source: string | ModelPackage, options: EngineOptions = {}): Promise<Engine> {
    const pkg = typeof source === 'string' ? await loadPackage(source) : source;
    const logger = options.logger ?? silentLogger;
    const profile = options.profile;
    const chain: ProviderSpec[] = profile?.executionProviders ?? [{ name: 'cpu' }];
    const threads: Threads = {
      intraOp: options.threads?.intraOp ?? profile?.threads.intraOp ?? availableParallelism(),
      interOp: options.threads?.interOp ?? profile?.threads.interOp ?? 1,
    };
    const createSession = options.createSession ?? ortSessionFactory;
    const placements: Record<string, Placement> = {};
    const open = async (part: PackagePart): Promise<Session> => {
      const { session, placement } = await openSession(part.path, chain, threads, createSession);
      placements[part.name] = placement;
      for (const a of placement.attempts.filter((x) => !x.ok)) {
        logger.warn({ part: part.name, provider: a.provider, reason: a.reason }, 'execution provider unavailable, falling back');
      }
      return session;
    };

    // Everything opened is released if the load fails at any point: a refused update must not leak sessions.
    const opened: Session[] = [];
    let experts: ExpertCache<Session> | undefined;
    try {
      const shared = await Promise.allSettled([open(pkg.trunk), open(pkg.base), open(pkg.gate)]);
      for (const r of shared) if (r.status === 'fulfilled') opened.push(r.value);
      const failed = shared.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const [trunk, base, gate] = opened;
      const task = createTask(pkg.manifest);
      const featureShape = checkShapes(pkg.manifest, task, { trunk, base, gate });
      const openExpert = async (index: number): Promise<Session> => {
        const session = await open(pkg.experts[index]);
        try {
          checkExpert(task, index, session, featureShape);
        } catch (err) {
          await session.release();
          throw err;
        }
        return session;
      };
      const eager = (profile?.experts.loading ?? 'eager') === 'eager';
      const budgetMB = profile?.experts.budgetMB;
      experts = new ExpertCache<Session>({
        load: openExpert,
        sizeOf: (i) => pkg.experts[i].bytes,
        budgetBytes: budgetMB === undefined ? undefined : budgetMB * 2 ** 20,
      });
      const engine = new Engine(pkg, trunk, base, gate, experts, featureShape, placements);
      if (eager) {
        for (let i = 0; i < pkg.experts.length; i++) await experts.get(i);
      } else {
        // Lazy experts are still checked now, one at a time, so a bad package fails at load and not mid-shift.
        for (let i = 0; i < pkg.experts.length; i++) await (await openExpert(i)).release();
      }
      if (options.warmup ?? true) await engine.warmup();
      logger.info(
        { model: pkg.manifest.name, version: pkg.manifest.version, providers: engine.providerSummary(), threads, eager },
        'engine loaded',
      );
      if ((await readFactoryReport(pkg.dir))?.quick) logger.warn({ model: pkg.manifest.name, version: pkg.manifest.version }, `the package is ${QUICK_BUILD_WARNING}`);
      return engine;
    } catch (err) {
      await Promise.all([...opened.map((s) => s.release()), experts?.dispose()]);
      throw err;
    }
  }

  /** Values in one input tensor (the product of the input's per-sample dimensions). */
  get inputSize(): number {
    return this.sampleSize;
  }

  get model(): Readonly<{ name: string; version: string }> {
    return (this.modelRef ??= Object.freeze({ name: this.manifest.name, version: this.manifest.version }));
  }

  /** Provider name per loaded part, e.g. { trunk: 'cpu', ..., 'expert-00': 'cpu' }. */
  providerSummary(): Record<string, string> {
    return Object.fromEntries(Object.entries(this.placements).map(([part, p]) => [part, p.provider]));
  }

  getSettings(): RuntimeSettings {
    return { ...this.settings };
  }

  /** Changes run-time knobs; validated here because they arrive from operators (CLI, MQTT commands). */
  configure(changes: Partial<RuntimeSettings>): RuntimeSettings {
    const next = { ...this.settings, ...changes };
    const experts = this.pkg.experts.length;
    const [min, max] = this.task.earlyExitRange;
    if (!(next.threshold >= min && next.threshold <= max)) {
      throw new SgmoeError('E_CONFIG_INVALID', `a ${this.task.name} early-exit threshold must be within [${min}, ${max}], got ${next.threshold}`);
    }
    if (!Number.isInteger(next.topK) || next.topK < 1 || next.topK > experts) {
      throw new SgmoeError('E_CONFIG_INVALID', `topK must be an integer from 1 to ${experts}, got ${next.topK}`);
    }
    if (next.forcedExpert !== null && !(Number.isInteger(next.forcedExpert) && next.forcedExpert >= 0 && next.forcedExpert < experts)) {
      throw new SgmoeError('E_CONFIG_INVALID', `forcedExpert must be null or an expert index from 0 to ${experts - 1}, got ${next.forcedExpert}`);
    }
    this.settings = next;
    return this.getSettings();
  }

  /**
   * Picks the early-exit threshold from the manifest's calibration curve so that the mean MACs per frame stay
   * within `maxMeanMacs`: the most accurate point that fits (the cheaper one on ties).
   */
  setComputeBudget(maxMeanMacs: number): CalibrationPoint {
    const points = this.manifest.calibration.points;
    const fitting = points.filter((p) => p.meanMacs <= maxMeanMacs);
    if (fitting.length === 0) {
      const cheapest = Math.min(...points.map((p) => p.meanMacs));
      throw new SgmoeError(
        'E_BUDGET_UNREACHABLE',
        `a budget of ${maxMeanMacs} MACs per frame is below every calibrated point; the cheapest needs ${cheapest}`,
        { cheapest },
      );
    }
    const best = fitting.reduce((a, b) => ((b.accuracy ?? 0) > (a.accuracy ?? 0) || ((b.accuracy ?? 0) === (a.accuracy ?? 0) && b.meanMacs < a.meanMacs) ? b : a));
    this.configure({ threshold: best.threshold });
    return best;
  }

  stats(): EngineStats {
    return { samples: this.samples, earlyExits: this.earlyExits, expertRuns: [...this.expertRuns], cache: this.experts.counters() };
  }

  infer(tensor: Float32Array, frameId?: string): Promise<Decision> {
    return this.inferBatch([tensor], frameId === undefined ? undefined : [frameId]).then((d) => d[0]);
  }

  /**
   * Trunk, base and gate run once on the whole batch; each expert runs once on the sub-batch routed to it, and
   * early-exited samples cost no expert work at all.
   */
  inferBatch(tensors: Float32Array[], frameIds?: string[]): Promise<Decision[]> {
    return this.exclusive(() => this.decideBatch(tensors, frameIds));
  }

  /** Every part's raw output for one input, experts included whether routed or not (for self-tests). */
  runAllParts(tensor: Float32Array): Promise<PartOutputs> {
    return this.exclusive(async () => {
      const features = await this.run(this.trunk, this.batchTensor([tensor]));
      const base = (await this.branchRows(this.base, features, 1))[0];
      const gate = await this.runGate(features, 1);
      const experts: BranchOutputs[] = [];
      for (let e = 0; e < this.pkg.experts.length; e++) experts.push((await this.branchRows(await this.experts.get(e), features, 1))[0]);
      return { features, base, gateLogits: gate.logits, gateOutputs: gate.rows[0], experts };
    });
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.tail.catch(() => undefined);
    await Promise.all([this.trunk.release(), this.base.release(), this.gate.release(), this.experts.dispose()]);
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new SgmoeError('E_ENGINE_DISPOSED', 'this engine was disposed (by its owner, or when a newer model replaced it)'));
    const result = this.tail.then(work, work);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async warmup(): Promise<void> {
    const features = await this.run(this.trunk, this.batchTensor([new Float32Array(this.sampleSize)]));
    await this.runOn(this.base, features, 1);
    await this.runOn(this.gate, features, 1);
    for (const e of this.experts.counters().resident) await this.runOn(await this.experts.get(e), features, 1);
  }

  private batchTensor(tensors: Float32Array[]): ort.Tensor {
    const data = new Float32Array(tensors.length * this.sampleSize);
    tensors.forEach((t, i) => {
      if (t.length !== this.sampleSize) {
        throw new SgmoeError('E_INPUT_SHAPE', `input ${i} has ${t.length} values, the model takes ${this.sampleShape.join('x')} = ${this.sampleSize}`);
      }
      data.set(t, i * this.sampleSize);
    });
    return new ort.Tensor('float32', data, [tensors.length, ...this.sampleShape]);
  }

  private async run(session: Session, input: ort.Tensor): Promise<Float32Array> {
    const out = await session.run({ [session.inputNames[0]]: input });
    return out[session.outputNames[0]].data as Float32Array;
  }

  /** Runs a features-consuming part on `n` rows of flat features. */
  private runOn(session: Session, features: Float32Array, n: number): Promise<Float32Array> {
    return this.run(session, this.featureTensor(features, n));
  }

  private featureTensor(features: Float32Array, n: number): ort.Tensor {
    return new ort.Tensor('float32', features, [n, ...this.featureShape]);
  }

  /** Runs the gate on `n` feature rows: its logits, and each sample's outputs the task reads besides them. */
  private async runGate(features: Float32Array, n: number): Promise<{ logits: Float32Array; rows: BranchOutputs[] }> {
    const out = await this.gate.run({ [this.gate.inputNames[0]]: this.featureTensor(features, n) });
    const names = this.task.gateOutputs ?? [];
    const rows: Record<string, Float32Array>[] = Array.from({ length: n }, () => ({}));
    for (const name of names) {
      const data = out[name].data as Float32Array;
      const size = data.length / n;
      for (let i = 0; i < n; i++) rows[i][name] = data.subarray(i * size, (i + 1) * size);
    }
    return { logits: out.gate_logits.data as Float32Array, rows };
  }

  /** Runs a branch part (the base or an expert) on `n` feature rows: each sample's outputs, by the task's names. */
  private async branchRows(session: Session, features: Float32Array, n: number): Promise<BranchOutputs[]> {
    const out = await session.run({ [session.inputNames[0]]: this.featureTensor(features, n) });
    const rows: Record<string, Float32Array>[] = Array.from({ length: n }, () => ({}));
    for (const { name } of this.task.branchOutputs) {
      const data = out[name].data as Float32Array;
      const size = data.length / n;
      for (let i = 0; i < n; i++) rows[i][name] = data.subarray(i * size, (i + 1) * size);
    }
    return rows;
  }

  private async decideBatch(tensors: Float32Array[], frameIds?: string[]): Promise<Decision[]> {
    const n = tensors.length;
    if (n === 0) return [];
    const { threshold, topK, mode, forcedExpert } = this.settings;
    const macs = this.pkg.manifest.parts;

    let t0 = now();
    const features = await this.run(this.trunk, this.batchTensor(tensors));
    const trunkUs = microsSince(t0) / n;
    t0 = now();
    const baseOutputs = await this.branchRows(this.base, features, n);
    const baseUs = microsSince(t0) / n;

    const verdicts: BaseVerdict[] = baseOutputs.map((o) => this.task.base(o, mode === 'base-only' ? -Infinity : threshold));
    const routed = verdicts.flatMap((v, i) => (v.earlyExit ? [] : [i]));

    // Gate on the samples that go on (all of them when the task reads every gate), then gather each expert's
    // sub-batch, run it once, scatter its outputs back.
    const gated = this.task.gateAlways && mode !== 'base-only' ? verdicts.map((_, i) => i) : routed;
    const gateProbs: number[][] = verdicts.map(() => []);
    const gateOutputs: BranchOutputs[] = verdicts.map(() => NO_OUTPUTS);
    const chosen: { experts: number[]; weights: number[] }[] = verdicts.map(() => ({ experts: [], weights: [] }));
    let gateUs = 0;
    if (gated.length > 0) {
      t0 = now();
      const gate = await this.runGate(this.gather(features, gated), gated.length);
      gateUs = microsSince(t0) / gated.length;
      const K = this.pkg.experts.length;
      gated.forEach((sample, r) => {
        gateProbs[sample] = softmax(gate.logits.subarray(r * K, (r + 1) * K));
        gateOutputs[sample] = gate.rows[r];
        if (verdicts[sample].earlyExit) return;
        chosen[sample] = forcedExpert === null ? routeExperts(gateProbs[sample], topK) : { experts: [forcedExpert], weights: [1] };
      });
    }
    const expertOutputs: BranchOutputs[][] = verdicts.map(() => []);
    const expertUs = new Array<number>(n).fill(0);
    const expertMacs = new Array<number>(n).fill(0);
    for (let e = 0; e < this.pkg.experts.length; e++) {
      const rows = routed.filter((s) => chosen[s].experts.includes(e));
      if (rows.length === 0) continue;
      t0 = now();
      const outputs = await this.branchRows(await this.experts.get(e), this.gather(features, rows), rows.length);
      const perSample = microsSince(t0) / rows.length;
      this.expertRuns[e] += rows.length;
      rows.forEach((s, r) => {
        expertOutputs[s][chosen[s].experts.indexOf(e)] = outputs[r];
        expertUs[s] += perSample;
        expertMacs[s] += macs.experts[e].macs;
      });
    }

    this.samples += n;
    return verdicts.map((v, i): Decision => {
      const { experts, weights } = chosen[i];
      const result = this.task.finish(v, expertOutputs[i], weights, gateProbs[i], gateOutputs[i]);
      if (v.earlyExit && mode === 'moe') this.earlyExits++;
      const gateRan = gateProbs[i].length > 0;
      const sampleGateUs = gateRan ? gateUs : 0;
      const timingsUs: StageTimingsUs = {
        trunk: trunkUs,
        base: baseUs,
        gate: sampleGateUs,
        expert: expertUs[i],
        total: trunkUs + baseUs + sampleGateUs + expertUs[i],
      };
      return {
        frameId: frameIds?.[i] ?? `${this.model.name}-${this.samples - n + i}`,
        ...result,
        expert: experts[0] ?? null,
        experts,
        gate: gateProbs[i],
        earlyExit: v.earlyExit && mode === 'moe',
        baseConfidence: v.confidence,
        macs: macs.trunk.macs + macs.base.macs + (gateRan ? macs.gate.macs : 0) + expertMacs[i],
        timingsUs,
        providers: this.decisionProviders(experts[0]),
        model: this.model,
      };
    });
  }

  /** One frozen object per route, shared by the decisions that took it: nothing to allocate per frame. */
  private decisionProviders(expert: number | undefined): Readonly<Record<string, string>> {
    const key = expert === undefined ? 0 : expert + 1;
    return (this.providersByRoute[key] ??= Object.freeze(this.routeProviders(expert)));
  }

  private routeProviders(expert: number | undefined): Record<string, string> {
    const p = this.placements;
    const out: Record<string, string> = { trunk: p.trunk.provider, base: p.base.provider, gate: p.gate.provider };
    if (expert !== undefined) out.expert = p[expertPartName(expert)].provider;
    return out;
  }

  /** Copies the feature rows of `rows` into one contiguous sub-batch. */
  private gather(features: Float32Array, rows: number[]): Float32Array {
    if (rows.length * this.featureSize === features.length) return features;
    const out = new Float32Array(rows.length * this.featureSize);
    rows.forEach((row, r) => out.set(features.subarray(row * this.featureSize, (row + 1) * this.featureSize), r * this.featureSize));
    return out;
  }
}
