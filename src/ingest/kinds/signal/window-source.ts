import { extname } from 'node:path';
import { SgmoeError, errorMessage } from '../../../errors';
import type { Frame } from '../../frame';
import { BaseSource, type SettledBefore, type FrameOutcome, type FrameSource, type SourceOptions, type SourceStats } from '../../source';
import { checkBlock, type SampleBlock } from './block';
import { parseCsv } from './csv';
import type { SignalSpec } from './spec';
import { parseStreamBlock } from './stream-block';
import { parseWav } from './wav';
import { Windower } from './windower';

/** Where a signal window lies in its signal: for its result and its audit row. */
export interface WindowPlace {
  /** Epoch ms of the first sample (streams with timestamps). */
  start?: number;
  /** First sample of the window within its file or since its stream's last reset. */
  offset: number;
  tags: SampleBlock['tags'];
}

/** The window's place, when the frame is a signal window (not a rejected payload, not an image). */
export function windowPlace(frame: Frame): WindowPlace | undefined {
  const meta = frame.meta?.signal as WindowMeta | undefined;
  return meta?.offset === undefined ? undefined : { start: meta.start, offset: meta.offset, tags: meta.tags ?? {} };
}

/** What a window frame or a rejected payload carries in `frame.meta.signal`. */
export interface WindowMeta {
  payloadId: string;
  /** First sample of the window within its file or since its stream's last reset. */
  offset?: number;
  /** Epoch ms of the first sample (streams). */
  start?: number;
  tags?: SampleBlock['tags'];
  /** The payload could not be read: the frame stands for it and is rejected with this error. */
  rejection?: SgmoeError;
}

interface Pending {
  payload: Frame;
  open: number;
  /** The first of its windows not decided (rejected, or dropped at a stop): the payload's outcome. */
  failure?: Exclude<FrameOutcome, { status: 'decided' }>;
  ended: boolean;
}

/**
 * Turns a source of payloads (a hot folder's WAV/CSV files, MQTT sample blocks) into a source of windows, each
 * one frame with `samples` set. A file is windowed on its own; an MQTT topic is one continuous stream, windowed
 * across blocks (a timestamp gap restarts it, counted in `windowResets`). A payload that cannot be read becomes
 * one frame that the signal preprocessing rejects with its code, so every window and every bad payload is
 * accounted for like an image frame. The payload is settled (the file moved) once all its windows are.
 */
export class SignalWindowSource extends BaseSource {
  readonly kind;
  /** A window left unsettled keeps its payload unsettled: the hot folder's file stays in the inbox, as it replays. */
  readonly replays;
  private readonly streams = new Map<string, Windower>();
  private readonly pending = new Map<string, Pending>();

  private readonly gain: number;
  private readonly settledBefore?: SettledBefore;
  private alreadyDecided = 0;
  private alreadyRejected = 0;

  constructor(
    private readonly payloads: FrameSource,
    private readonly spec: SignalSpec,
    options: SourceOptions & { gain?: number; settledBefore?: SettledBefore } = {},
  ) {
    super(payloads.name, { name: payloads.name, ...options }, payloads.kind === 'dir' ? { capacity: 16, policy: 'block' } : { capacity: 64, policy: 'drop-oldest' });
    this.kind = payloads.kind;
    this.replays = payloads.replays;
    this.gain = options.gain ?? 1;
    this.settledBefore = options.settledBefore;
  }

  /**
   * Adds the stream resets (timestamp gaps), the payloads the inner source dropped before windowing, and its errors
   * (a recording the hot folder could not read), which the node, the dashboard and the health reports show only here.
   */
  override stats(): SourceStats {
    const own = super.stats();
    const inner = this.payloads.stats();
    const resets = [...this.streams.values()].reduce((n, w) => n + w.resets, 0);
    const decided = this.alreadyDecided > 0 && { alreadyDecided: this.alreadyDecided };
    const rejected = this.alreadyRejected > 0 && { alreadyRejected: this.alreadyRejected };
    const lastError = [own.lastError, inner.lastError].reduce((a, b) => (b && (!a || b.at >= a.at) ? b : a), undefined);
    return { ...own, errors: own.errors + inner.errors, lastError, windowResets: resets, payloadsDropped: inner.dropped, ...decided, ...rejected };
  }

  /** Samples received on streams and not yet in a finished window. */
  pendingSamples(): number {
    return [...this.streams.values()].reduce((n, w) => n + w.pendingSamples(), 0);
  }

  /** The payloads' source stops with this one (its end ends the windowing); its failure to stop is this source's. */
  override async stop(): Promise<void> {
    const outcomes = await Promise.allSettled([this.payloads.stop(), super.stop()]);
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  }

  protected async run(signal: AbortSignal): Promise<void> {
    const payloads = this.payloads[Symbol.asyncIterator]();
    // Stopped, it reads no further payload, nor waits for one: a source that would not stop must not hold the node's.
    const aborted = new Promise<null>((resolve) => signal.addEventListener('abort', () => resolve(null), { once: true }));
    while (!signal.aborted) {
      const next = await Promise.race([payloads.next(), aborted]);
      if (next === null || next.done) return;
      await this.split(next.value);
    }
  }

  protected override async onSettled(frame: Frame, outcome: FrameOutcome): Promise<void> {
    const meta = frame.meta?.signal as WindowMeta | undefined;
    const entry = meta && this.pending.get(meta.payloadId);
    if (!entry) return;
    entry.open--;
    if (outcome.status !== 'decided') entry.failure ??= outcome;
    await this.finish(entry);
  }

  private async split(payload: Frame): Promise<void> {
    const entry: Pending = { payload, open: 0, ended: false };
    this.pending.set(payload.id, entry);
    const file = typeof payload.meta?.file === 'string' ? payload.meta.file : undefined;
    let windows;
    try {
      const block = checkBlock(scaled(this.parse(payload, file), this.gain), this.spec, file ?? payload.source);
      const key = String(payload.meta?.topic ?? payload.source);
      const stream = file ? new Windower(this.spec) : this.streamOf(key);
      const [held, resets] = [stream.pendingSamples(), stream.resets];
      windows = stream.push(block);
      if (stream.resets > resets) this.reportReset(key, stream.resets, held, block.timestamp);
      if (file && windows.length === 0) {
        throw new SgmoeError('E_SIGNAL_SHORT', `expected at least one window of ${this.spec.window} samples in ${file}, found ${block.samples[0].length}`);
      }
    } catch (err) {
      const rejection = err instanceof SgmoeError ? err : new SgmoeError('E_SIGNAL_FORMAT', errorMessage(err), undefined, { cause: err });
      const frame = { ...this.frameOf(payload, file, 0), meta: { ...payload.meta, signal: { payloadId: payload.id, rejection } satisfies WindowMeta } };
      // A recording a kill left in the inbox after its rejection (during its hold, when cut short): settled as then.
      const before = payload.meta?.leftover ? this.settledBefore?.(frame) : undefined;
      if (before?.status === 'rejected') {
        this.alreadyRejected++;
        this.pending.delete(payload.id);
        return this.payloads.settle(payload, before);
      }
      entry.open = 1;
      await this.emit(frame);
      return this.end(entry);
    }
    const frames = windows.map((w) => {
      const meta: WindowMeta = { payloadId: payload.id, offset: w.offset, ...(w.start !== undefined ? { start: w.start } : {}), tags: w.tags };
      return { ...this.frameOf(payload, file, w.offset), samples: w.data, meta: { ...payload.meta, signal: meta } };
    });
    // A recording a stop or kill left in the inbox: the windows an earlier run decided or rejected (a NaN, a flat
    // channel) are not put through again; a rejection still sends the recording to rejected/.
    const before = new Map(payload.meta?.leftover ? frames.map((f) => [f, this.settledBefore?.(f)] as const) : []);
    const fresh = frames.filter((f) => before.get(f) === undefined);
    for (const outcome of before.values()) {
      if (outcome?.status === 'decided') this.alreadyDecided++;
      else if (outcome?.status === 'rejected') {
        this.alreadyRejected++;
        entry.failure ??= outcome;
      }
    }
    if (fresh.length < frames.length) {
      this.log.info({ payloadId: payload.id }, `${file}: ${frames.length - fresh.length} of its ${frames.length} windows were settled before the node stopped, not put through again`);
    }
    entry.open = fresh.length;
    for (const frame of fresh) await this.emit(frame);
    await this.end(entry);
  }

  private async end(entry: Pending): Promise<void> {
    entry.ended = true;
    await this.finish(entry);
  }

  /** Settles the payload once every window it produced is settled (a stream block may produce none). */
  private async finish(entry: Pending): Promise<void> {
    if (!entry.ended || entry.open > 0 || !this.pending.delete(entry.payload.id)) return;
    await this.payloads.settle(entry.payload, entry.failure ?? { status: 'decided' });
  }

  private frameOf(payload: Frame, file: string | undefined, offset: number): Frame {
    // Files: stable ids (the file's id and the window's offset); streams: the source's sequence.
    return { id: file ? `${payload.id}#${offset}` : this.nextId(), source: this.name, receivedAt: payload.receivedAt };
  }

  private parse(payload: Frame, file: string | undefined): SampleBlock {
    const bytes = payload.bytes ?? Buffer.alloc(0);
    if (!file) return parseStreamBlock(bytes, payload.source);
    const ext = extname(file).toLowerCase();
    if (ext === '.wav') return parseWav(bytes, file);
    if (ext === '.csv') return parseCsv(bytes, file);
    throw new SgmoeError('E_SIGNAL_FORMAT', `expected a .wav or .csv recording, found ${file}`);
  }

  /**
   * A stream restarted on a block that does not follow on (a gap, time going back, a clock stuck at one value): said at
   * the 1st, 10th, 100th... reset of the stream, so a sensor whose blocks never follow on is seen without flooding.
   */
  private reportReset(key: string, resets: number, dropped: number, ts: number | undefined): void {
    if (!/^10*$/.test(String(resets))) return;
    this.log.warn(
      { stream: key, resets, samplesDropped: dropped, ts },
      `${key}: a block at ts ${ts} does not follow on from the previous one: ${dropped} samples held were dropped and the window restarted ` +
        `(reset ${resets} of this stream; blocks must carry the epoch ms of their first sample, or no ts at all to be taken as continuous)`,
    );
  }

  private streamOf(key: string): Windower {
    let w = this.streams.get(key);
    if (!w) this.streams.set(key, (w = new Windower(this.spec)));
    return w;
  }
}

/** The block in the package's units: each sample times the source's gain. */
function scaled(block: SampleBlock, gain: number): SampleBlock {
  if (gain === 1) return block;
  return { ...block, samples: block.samples.map((channel) => channel.map((v) => v * gain)) };
}
