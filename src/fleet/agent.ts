import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SgmoeError, errorCode, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import { Engine, type EngineOptions } from '../engine/engine';
import { runSelftest } from '../engine/selftest-run';
import { sha256File } from '../model/integrity';
import { loadPackage } from '../model/package';
import { loadSelftest } from '../model/selftest';
import { downloadWithRetry } from './download';
import { DEFAULT_HEALTH_WATCH, watchHealth, type HealthWatchOptions } from './health-watch';
import type { EngineHost, HealthProbe } from './host';
import type { TrustedKeys } from './keys';
import { parseUpdateRequest, type ChunkRef, type UpdateRequest, type UpdateResult, type UpdateStep } from '../protocol/update';

export type { UpdateResult };
import { compareVersions } from './semver';
import { checkSignature } from './signature';
import { packageId, type PackageStore, type UpdateState } from './store';
import { unpackPackage } from './unpack';

export interface UpdateLimits {
  maxDownloadBytes: number;
  downloadTimeoutMs: number;
  /** A transfer with no progress for this long is aborted (the slot is free again for the next request). */
  stallTimeoutMs: number;
  maxUnpackedBytes: number;
  maxFiles: number;
  /** Retries of a download whose connection failed (refused, DNS, cut short, 5xx), resuming the part kept. */
  downloadRetries: number;
  /** The first pause before a retry; each next one doubles (up to 30 s). */
  retryBackoffMs: number;
}

export const DEFAULT_UPDATE_LIMITS: UpdateLimits = {
  maxDownloadBytes: 512 * 2 ** 20,
  downloadTimeoutMs: 10 * 60_000,
  stallTimeoutMs: 60_000,
  maxUnpackedBytes: 1024 * 2 ** 20,
  maxFiles: 10_000,
  downloadRetries: 3,
  retryBackoffMs: 2_000,
};

/** Fetches a package sent in chunks over MQTT into `dest` (see `fetchChunks`). */
export type ChunkFetcher = (ref: ChunkRef, dest: string, limits: UpdateLimits, signal: AbortSignal) => Promise<void>;

/** The model the device runs after a step that changed it, with what routing health needs. */
export interface RunningModel {
  name: string;
  version: string;
  expertShare: number[];
  /** Anomaly packages: the good-image score quantiles routing health watches the scores against. */
  scoreQuantiles?: Array<{ q: number; score: number }>;
}

/** One step of an update, for `cmd/update/reply`, the status message and the audit events. */
export interface UpdateEvent {
  correlationId: string | null;
  /** The operator key that authorised the request (null or absent: not asked for over MQTT), for its audit events. */
  keyId?: string | null;
  step: UpdateStep;
  /** The version being installed (or, for a rollback, the one left). */
  version: string;
  message: string;
  /** Set when the running model changed with this step (swap, rollback): the node reports `modelChanged`. */
  model?: RunningModel;
  error?: { code: string; message: string };
  /** On `failed`: the step it had reached (`requested`: refused before anything was fetched). */
  at?: UpdateStep;
  /** On `watching`: how long the health watch lasts. */
  watchMs?: number;
  ts: string;
}

export interface UpdateAgentOptions {
  store: PackageStore;
  host: EngineHost;
  probe: HealthProbe;
  trustedKeys: TrustedKeys;
  /** How new engines are loaded (device profile, threads). */
  engine?: EngineOptions;
  limits?: Partial<UpdateLimits>;
  watch?: Partial<HealthWatchOptions>;
  fetchChunks?: ChunkFetcher;
  onEvent?: (event: UpdateEvent) => void;
  logger?: Logger;
}

/** What is persisted and reported about the update in progress. */
interface Run {
  correlationId: string | null;
  keyId: string | null;
  version: string;
  sha256: string;
  target: string | null;
  previous: string | null;
  /** The last step begun: a failure says where it stopped. */
  step: UpdateStep;
}

/** The update or rollback in progress: the step it is at, and how a newer request stops it. */
interface Slot {
  step: UpdateStep | null;
  abort: AbortController;
  done: Promise<unknown>;
}

function runningModel(engine: Engine): RunningModel {
  const quantiles = engine.manifest.calibration.anomaly?.quantiles;
  return { ...engine.model, expertShare: [...engine.manifest.calibration.expertShare], ...(quantiles ? { scoreQuantiles: quantiles.map((p) => ({ ...p })) } : {}) };
}

/**
 * The device side of a fleet update, one at a time: the signature over the announced sha256 against the trusted
 * keys (before any byte is fetched) → download (a newer request replaces one still downloading) → sha256 → unpack safely into staging → load and self-test there, and only then into the store → swap via the EngineHost → health watch, rolling back
 * on a regression. Every step is persisted before it starts (PackageStore.recover undoes a half-done one after a
 * power loss) and reported through `onEvent`.
 */
export class UpdateAgent {
  private readonly limits: UpdateLimits;
  private readonly watch: HealthWatchOptions;
  private readonly log: Logger;
  private slot: Slot | null = null;

  constructor(private readonly options: UpdateAgentOptions) {
    this.limits = { ...DEFAULT_UPDATE_LIMITS, ...options.limits };
    this.watch = { ...DEFAULT_HEALTH_WATCH, ...options.watch };
    this.log = (options.logger ?? silentLogger).child({ module: 'fleet' });
  }

  /** How long the device watches its health after a swap before it reports done (the status tells operators). */
  get watchWindowMs(): number {
    return this.watch.windowMs;
  }

  /**
   * Runs one update to its end. Reports `requested`, each step, and one final event (done, failed with the step
   * it had reached, or rolled_back); rejects with the reason (an SgmoeError code) when refused or rolled back.
   */
  async update(args: unknown, correlationId: string | null = null, keyId: string | null = null): Promise<UpdateResult> {
    const request = parseUpdateRequest(args);
    const run: Run = { correlationId, keyId, version: request.version, sha256: request.sha256, target: null, previous: null, step: 'requested' };
    this.emit(run, 'requested', `update to ${request.version} requested`);
    try {
      return await this.exclusive(async (signal) => {
        run.previous = (await this.options.store.pointer())?.current ?? null;
        try {
          return await this.install(run, request, signal);
        } catch (err) {
          const error = { code: errorCode(err), message: errorMessage(err) };
          if (error.code === 'E_HEALTH_REGRESSION') await this.options.store.prune();
          else await this.discard(run, error.code === 'E_UPDATE_REPLACED');
          await this.persist(run, error.code === 'E_HEALTH_REGRESSION' ? 'rolled_back' : 'failed', error);
          throw err;
        }
      });
    } catch (err) {
      // Also a refusal before the slot was taken (E_UPDATE_BUSY): every request ends in exactly one final event.
      const error = { code: errorCode(err), message: errorMessage(err) };
      if (error.code === 'E_HEALTH_REGRESSION') this.emit(run, 'rolled_back', error.message, { error, model: runningModel(this.options.host.engine) });
      else this.emit(run, 'failed', error.message, { error, at: run.step });
      throw err;
    }
  }

  /** `sgmoe model rollback` on a running device: back to the package that ran before the current one. */
  async rollback(correlationId: string | null = null, keyId: string | null = null, reason = 'requested by an operator'): Promise<{ from: string; to: string }> {
    return this.exclusive(async () => {
      const left = this.options.host.engine.model.version;
      const { from, to } = await this.switchBack();
      const state = await this.options.store.readState();
      const run: Run = { correlationId, keyId, version: left, sha256: state?.sha256 ?? '', target: from, previous: to, step: 'rolled_back' };
      await this.persist(run, 'rolled_back', { code: 'E_ROLLBACK', message: reason });
      this.emit(run, 'rolled_back', `rolled back from ${from} to ${to}: ${reason}`, { model: runningModel(this.options.host.engine) });
      return { from, to };
    });
  }

  private async install(run: Run, request: UpdateRequest, signal: AbortSignal): Promise<UpdateResult> {
    const { store, host } = this.options;
    const running = host.engine.model;
    if (!run.previous) {
      throw new SgmoeError('E_STORE_EMPTY', `no current package in ${store.root}: expected the running package adopted into the store first`);
    }
    if (!request.force && compareVersions(request.version, running.version) <= 0) {
      throw new SgmoeError('E_VERSION_NOT_NEWER', `version ${request.version} is not newer than the running ${running.version} (set force to downgrade)`, {
        running: running.version,
        offered: request.version,
      });
    }
    if (!request.signature) {
      throw new SgmoeError(
        'E_SIGNATURE_MISSING',
        `the update to ${request.version} carries no signature: expected one by a trusted key, refusing an unsigned package (sign it with \`sgmoe model sign PKG.tar --key KEY\`)`,
      );
    }

    // Nothing is fetched for a package no trusted key signed: the download then only has to match that digest.
    const { keyId } = checkSignature(request.signature, request.sha256, this.options.trustedKeys);

    await store.pruneDownloads(request.sha256);
    await this.begin(run, 'downloading', `signature by ${keyId} holds; fetching ${request.url ?? request.chunks?.topic}`);
    const tar = this.downloadPath(request.sha256);
    await this.fetch(request, tar, signal);

    await this.begin(run, 'verifying', 'checking the sha256 against the signed one');
    const sha256 = await sha256File(tar);
    if (sha256 !== request.sha256) {
      throw new SgmoeError('E_HASH_MISMATCH', `the downloaded package's sha256 is ${sha256}, the signed update expects ${request.sha256}`, { expected: request.sha256, actual: sha256 });
    }

    await this.begin(run, 'unpacking', 'sha256 matches; unpacking');
    await store.clearStaging();
    const staged = join(store.stagingDir, request.sha256);
    await unpackPackage(tar, staged, { maxBytes: this.limits.maxUnpackedBytes, maxFiles: this.limits.maxFiles });
    const { manifest } = await loadPackage(staged, { verifyHashes: false });
    if (manifest.version !== request.version) {
      throw new SgmoeError('E_VERSION_MISMATCH', `the update announces version ${request.version}, the package's manifest says ${manifest.version}`);
    }
    if (manifest.name !== running.name && !request.force) {
      throw new SgmoeError('E_PACKAGE_NAME', `the package is ${manifest.name}, the device runs ${running.name} (set force to change models)`);
    }
    const id = packageId(manifest.name, manifest.version);
    // Before anything of the store is touched: another package under an id it keeps is refused, not swapped in.
    const digest = await store.admit(staged, id);
    if (id === run.previous) throw new SgmoeError('E_VERSION_NOT_NEWER', `${id} is the package running now`);
    run.target = id;
    // Self-tested where it was unpacked: only a package that passed enters the store.
    await this.begin(run, 'selftesting', `loading ${id} and running its self-test in staging`);
    await (await this.loadVerified(staged)).dispose();
    const dir = await store.install(staged, id, digest);
    await rm(tar, { force: true });

    await this.begin(run, 'staged', `${id} passed its self-test`);
    // Loaded again from where it will run (lazily loaded experts are opened from there), every hash checked again.
    const next = await Engine.load(dir, { ...this.options.engine, logger: this.log });
    await this.begin(run, 'swapping', `switching from ${run.previous} to ${id}`);
    const { previous } = await host.swap(next);
    await store.setCurrent(id);
    await this.persist(run, 'watching');
    const start = await this.options.probe.sample();
    run.step = 'watching';
    this.emit(run, 'watching', `running ${id}; watching health for ${this.watch.windowMs} ms`, { model: runningModel(next), watchMs: this.watch.windowMs });
    await previous.dispose();

    const verdict = await watchHealth(this.options.probe, start, this.watch);
    if (!verdict.ok) {
      this.log.warn({ reason: verdict.reason, id }, 'health regression after update, rolling back');
      await this.switchBack();
      throw new SgmoeError('E_HEALTH_REGRESSION', `${id} rolled back to ${run.previous}: ${verdict.reason}`, { reason: verdict.reason });
    }
    await this.persist(run, 'done');
    const removed = await store.prune();
    this.emit(run, 'done', `${id} is running${removed.length ? `; removed ${removed.join(', ')}` : ''}`);
    return { step: 'done', version: manifest.version, previous: run.previous };
  }

  /** Loads a package with every hash checked and passes its self-test, or disposes it and says why. */
  private async loadVerified(dir: string): Promise<Engine> {
    const pkg = await loadPackage(dir);
    const engine = await Engine.load(pkg, { ...this.options.engine, logger: this.log });
    try {
      const report = await runSelftest(engine, await loadSelftest(pkg.selftestPath));
      if (!report.ok) {
        const first = report.failures.slice(0, 3).map((f) => `${f.caseId} ${f.check}: ${f.message}`);
        throw new SgmoeError('E_SELFTEST_FAILED', `${report.failures.length} self-test check(s) failed, e.g. ${first.join('; ')}`, { failures: report.failures });
      }
      return engine;
    } catch (err) {
      await engine.dispose();
      throw err;
    }
  }

  /** Swaps back to the previous package (loaded and self-tested again), then points `current` at it. */
  private async switchBack(): Promise<{ from: string; to: string }> {
    const { store, host } = this.options;
    const pointer = await store.pointer();
    const to = pointer?.history[0];
    if (!pointer || !to) throw new SgmoeError('E_ROLLBACK_NONE', 'no earlier package to roll back to: the history is empty');
    await store.verify(to);
    const engine = await this.loadVerified(store.packageDir(to));
    const { previous } = await host.swap(engine);
    const moved = await store.revertCurrent();
    await previous.dispose();
    return moved;
  }

  private async fetch(request: UpdateRequest, dest: string, signal: AbortSignal): Promise<void> {
    if (request.url) {
      await downloadWithRetry(request.url, dest, {
        maxBytes: this.limits.maxDownloadBytes,
        timeoutMs: this.limits.downloadTimeoutMs,
        stallMs: this.limits.stallTimeoutMs,
        retries: this.limits.downloadRetries,
        backoffMs: this.limits.retryBackoffMs,
        signal,
        onProgress: (received, total) => this.log.debug({ received, total }, 'downloading'),
        onRetry: (attempt, error, pauseMs) => this.log.warn({ attempt, code: error.code, err: error.message, pauseMs }, 'download failed: retrying'),
      });
    } else if (request.chunks) {
      if (!this.options.fetchChunks) {
        throw new SgmoeError('E_UPDATE_UNSUPPORTED', 'the update comes in MQTT chunks, but this agent has no chunk fetcher configured');
      }
      if (request.chunks.bytes > this.limits.maxDownloadBytes) {
        throw new SgmoeError('E_DOWNLOAD_TOO_LARGE', `the package is ${request.chunks.bytes} bytes, the limit is ${this.limits.maxDownloadBytes}`);
      }
      await this.options.fetchChunks(request.chunks, dest, this.limits, signal);
    }
  }

  /** Drops what a failed update left behind, except a partial download (a retry of the same package resumes it). */
  private async discard(run: Run, replaced: boolean): Promise<void> {
    await rm(this.downloadPath(run.sha256), { force: true });
    if (replaced) await rm(`${this.downloadPath(run.sha256)}.part`, { force: true });
    await this.options.store.clearStaging();
    const pointer = await this.options.store.pointer();
    if (run.target && run.target !== pointer?.current && !pointer?.history.includes(run.target)) {
      await rm(this.options.store.packageDir(run.target), { recursive: true, force: true });
    }
  }

  private downloadPath(sha256: string): string {
    return join(this.options.store.downloadsDir, `${sha256}.tar`);
  }

  private async begin(run: Run, step: UpdateStep, message: string): Promise<void> {
    if (this.slot) this.slot.step = step;
    run.step = step;
    await this.persist(run, step);
    this.emit(run, step, message);
  }

  private persist(run: Run, step: UpdateStep, error: UpdateState['error'] = null): Promise<UpdateState> {
    return this.options.store.writeState({
      step,
      correlationId: run.correlationId,
      version: run.version,
      sha256: run.sha256,
      target: run.target,
      previous: run.previous,
      error,
    });
  }

  private emit(run: Run, step: UpdateStep, message: string, extra: Pick<UpdateEvent, 'model' | 'error' | 'at' | 'watchMs'> = {}): void {
    const event: UpdateEvent = { correlationId: run.correlationId, keyId: run.keyId, step, version: run.version, message, ...extra, ts: new Date().toISOString() };
    this.log.info({ ...event }, 'update step');
    try {
      this.options.onEvent?.(event);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'update event listener failed');
    }
  }

  /**
   * One update or rollback at a time. A newer request replaces one that is still downloading (stalled or not):
   * it is aborted with E_UPDATE_REPLACED and cleans up first. Past the download, the newer one gets E_UPDATE_BUSY.
   */
  private async exclusive<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const running = this.slot;
    if (running?.step === 'downloading') {
      this.log.warn('a newer request replaces the update still downloading');
      running.abort.abort(new SgmoeError('E_UPDATE_REPLACED', 'a newer authorised request replaced this update while it was downloading'));
      await running.done.catch(() => undefined);
    }
    if (this.slot) throw new SgmoeError('E_UPDATE_BUSY', 'an update or rollback is already past its download on this device: expected one at a time');
    const slot: Slot = { step: null, abort: new AbortController(), done: Promise.resolve() };
    this.slot = slot;
    const done = work(slot.abort.signal).finally(() => {
      this.slot = null;
    });
    slot.done = done;
    return done;
  }
}
