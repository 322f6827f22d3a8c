import { SgmoeError, errorMessage } from '../errors';
import { silentLogger, type Logger } from '../log';
import type { Frame } from './frame';
import { BoundedQueue, type BackpressurePolicy } from './queue';

export type SourceKind = 'dir' | 'http' | 'mjpeg' | 'mqtt' | 'push' | 'rtsp' | 'v4l2' | 'video';

/**
 * How a frame left the pipeline; every frame a source yields is settled once (frames its queue dropped excepted).
 * `dropped`: its consumer could not decide it (the node stopped); a live source counts it as dropped.
 */
export type FrameOutcome = { status: 'decided' } | { status: 'rejected' | 'dropped'; error: SgmoeError };

/**
 * Counters of one source. They always add up: frames = decided + rejected + dropped + queued + in flight.
 * `errors` counts problems that produced no frame (a camera timeout, a broken stream, an unreadable file).
 */
export interface SourceStats {
  name: string;
  kind: SourceKind;
  frames: number;
  decided: number;
  rejected: number;
  dropped: number;
  queued: number;
  errors: number;
  /** Signal sources: stream restarts after a timestamp gap, and payloads dropped before windowing. */
  windowResets?: number;
  payloadsDropped?: number;
  /** Camera sources: decoder restarts, and damaged packets the decoder concealed. */
  restarts?: number;
  corrupt?: number;
  /**
   * Hot folders: files (a signal package's windows) found at the start that an earlier run had decided, its results
   * queued, before a stop or kill left them in the inbox: moved to done/, not decided again, and not in `frames`.
   */
  alreadyDecided?: number;
  /** Hot folders: the same for files an earlier run rejected (held again when cut short, then moved to rejected/). */
  alreadyRejected?: number;
  lastError?: { code: string; message: string; at: number };
}

/** What an earlier run made of a frame (its id and bytes), its result queued, if anything: the node asks its audit log. */
export type SettledBefore = (frame: Frame) => FrameOutcome | undefined;

/** Every way frames come in looks like this: iterate the frames, settle each one, stop. */
export interface FrameSource extends AsyncIterable<Frame> {
  readonly name: string;
  readonly kind: SourceKind;
  /**
   * True when a frame left unsettled is still held by its producer (a hot-folder file stays in the inbox): on a
   * full disk the node then waits for the frame's commit instead of settling it unrecorded.
   */
  readonly replays?: boolean;
  stats(): SourceStats;
  /** Reports what became of a frame; the hot folder moves its file to done/ or rejected/ here. */
  settle(frame: Frame, outcome: FrameOutcome): Promise<void>;
  /** Stops producing; frames already queued are still yielded, then the iteration ends. */
  stop(): Promise<void>;
  /** Also tells these of each dropped frame and each error (the node, of a source made by an SDK user). */
  reportTo?(report: SourceReport): void;
}

/** Who else hears of a source's dropped frames and errors, besides the callbacks of its options. */
export type SourceReport = Pick<SourceOptions, 'onDrop' | 'onError'>;

export interface SourceOptions {
  /** Name in frames, counters and logs (default: the URI). */
  name?: string;
  /** Frames held between the source and the consumer (default 2 for live sources, 16 for folders and push). */
  capacity?: number;
  /** What a full queue does (default drop-oldest for live sources, block for folders and push). */
  policy?: BackpressurePolicy;
  /** Called with each frame dropped by backpressure, so the caller can account for it. */
  onDrop?: (frame: Frame) => void;
  /** Called with each source error (no frame was produced). */
  onError?: (error: SgmoeError) => void;
  logger?: Logger;
}

/** Live cameras: a short queue that drops the oldest frame, so decisions are about what the camera sees now. */
export const LIVE_DEFAULTS = { capacity: 2, policy: 'drop-oldest' } as const;
/** Folders and SDK pushes: nothing may be skipped, so the producer waits. */
export const QUEUED_DEFAULTS = { capacity: 16, policy: 'block' } as const;

/**
 * The shared half of every source: the bounded queue, the counters, stop, ids. A subclass implements `run`,
 * which produces frames with `emit` until `signal` aborts (live sources) or the input is exhausted.
 */
export abstract class BaseSource implements FrameSource {
  abstract readonly kind: SourceKind;
  readonly name: string;
  protected readonly log: Logger;
  private readonly queue: BoundedQueue<Frame>;
  private readonly abort = new AbortController();
  private readonly counts = { frames: 0, decided: 0, rejected: 0, dropped: 0, errors: 0 };
  private lastError?: SourceStats['lastError'];
  private running?: Promise<void>;
  private iterating = false;
  private sequence = 0;
  /** Distinguishes ids across restarts of a live source, whose sequence starts again at 1. */
  private readonly session = Date.now().toString(36);
  private report: SourceReport = {};

  constructor(
    uri: string,
    private readonly options: SourceOptions,
    defaults: { capacity: number; policy: BackpressurePolicy },
  ) {
    this.name = options.name ?? uri;
    this.log = (options.logger ?? silentLogger).child({ source: this.name });
    this.queue = new BoundedQueue<Frame>(options.capacity ?? defaults.capacity, options.policy ?? defaults.policy, (frame) => {
      this.counts.dropped++;
      this.log.debug({ frameId: frame.id }, 'frame dropped by backpressure');
      options.onDrop?.(frame);
      this.report.onDrop?.(frame);
    });
  }

  reportTo(report: SourceReport): void {
    this.report = report;
  }

  protected abstract run(signal: AbortSignal): Promise<void>;

  /** Hook for sources that keep state per frame (the hot folder moves the file). */
  protected onSettled?(frame: Frame, outcome: FrameOutcome): Promise<void>;

  stats(): SourceStats {
    return { name: this.name, kind: this.kind, ...this.counts, queued: this.queue.size, lastError: this.lastError };
  }

  async settle(frame: Frame, outcome: FrameOutcome): Promise<void> {
    this.counts[outcome.status]++;
    await this.onSettled?.(frame, outcome);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    // Close first: a producer blocked on a full queue is admitted and then sees the abort.
    this.queue.close();
    await this.running;
  }

  [Symbol.asyncIterator](): AsyncIterator<Frame, undefined> {
    if (this.iterating) throw new SgmoeError('E_SOURCE_BUSY', `expected one consumer of source ${this.name}, found a second`);
    this.iterating = true;
    this.running ??= this.run(this.abort.signal).then(
      () => this.queue.close(),
      (err: unknown) => {
        const error = err instanceof SgmoeError ? err : new SgmoeError('E_SOURCE_FAILED', errorMessage(err), undefined, { cause: err });
        this.reportError(error);
        this.queue.close(error);
      },
    );
    return {
      next: () => this.queue.take(),
      return: async () => {
        await this.stop();
        return { done: true, value: undefined };
      },
    };
  }

  /** Queues a frame (waiting for room under `block`). After stop, frames are not taken in: nothing is counted. */
  protected async emit(frame: Frame): Promise<void> {
    if (this.queue.isClosed) return;
    this.counts.frames++;
    await this.queue.put(frame);
  }

  protected reportError(error: SgmoeError): void {
    this.counts.errors++;
    this.lastError = { code: error.code, message: error.message, at: Date.now() };
    this.log.warn({ code: error.code }, error.message);
    this.options.onError?.(error);
    this.report.onError?.(error);
  }

  /** `name#session-sequence` (or `name#session-key` for a key unique within the session): unique across restarts. */
  protected nextId(key?: string): string {
    return `${this.name}#${this.session}-${key ?? ++this.sequence}`;
  }
}
