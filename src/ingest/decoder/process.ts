import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { SgmoeError } from '../../errors';
import type { Logger } from '../../log';
import type { Size } from '../geometry';
import { framecrcReader, readDecoderLine } from './lines';
import type { DecoderPipeline } from './pipeline';

export interface DecodedFrame {
  /** Presentation timestamp in the stream's time base (ffmpeg) or in nanoseconds (GStreamer). */
  pts: number;
  seconds: number;
  data: Buffer;
}

/** How a decoder run ended: at the end of its input (`error` undefined) or with a named failure. */
export interface DecoderEnd {
  error?: SgmoeError;
}

export interface DecoderProcessOptions {
  pipeline: DecoderPipeline;
  frameBytes: number;
  /** The source as messages name it (credentials redacted). */
  source: string;
  redact: (text: string) => string;
  onCorrupt: (text: string) => void;
  logger: Logger;
}

/** How long a decoder may take to exit after SIGTERM before it is killed. */
const TERM_GRACE_MS = 3000;

/**
 * One supervised decoder child (ffmpeg or gst-launch): raw frames of a fixed size come out on fd 3 and are
 * paired, in order, with one line per frame that gives its pts (ffmpeg's framecrc on fd 4, GStreamer's log). Reading follows the
 * consumer (a frame is only read when the previous one was taken), so a slow consumer slows the decoder
 * instead of buffering without bound. Log lines are also read for damage (counted) and for the failure that
 * ended the run (named).
 */
export class DecoderProcess {
  private readonly child: ChildProcess;
  private readonly timestamps: Array<{ pts: number; seconds: number }> = [];
  private timestampWaiter?: () => void;
  private linesDone = false;
  private failure?: SgmoeError;
  private lastProblem?: string;
  /** The first error line that names no known failure: the decoder's own words for why it exits. */
  private cause?: string;
  /** The picture size of the input's video stream, as ffmpeg describes it (GStreamer does not). */
  private size?: Size;
  /** ffmpeg describes its input on stderr before the first frame, but the pipes are read independently. */
  private described: boolean;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(private readonly options: DecoderProcessOptions) {
    const { command, args } = options.pipeline;
    options.logger.debug({ command, args: args.map(options.redact) }, 'starting decoder');
    const stamped = options.pipeline.dialect === 'ffmpeg';
    this.described = !stamped;
    this.child = spawn(command, args, { stdio: stamped ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', 'pipe'] });
    let spawnError: Error | undefined;
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        spawnError = err;
        resolve({ code: null, signal: null });
      });
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    }).then((end) => {
      if (spawnError) {
        this.failure ??= new SgmoeError(
          'E_SOURCE_DECODER',
          `expected the decoder ${command} to start for ${options.source}, found ${(spawnError as NodeJS.ErrnoException).code ?? spawnError.message}`,
          { spawnError: (spawnError as NodeJS.ErrnoException).code ?? spawnError.message },
        );
      }
      return end as { code: number | null; signal: NodeJS.Signals | null };
    });
    const readStamp = framecrcReader();
    const streams: Array<[Readable, (line: string) => void]> = [
      [this.child.stdout as Readable, (line) => this.onLine(line)],
      [this.child.stderr as Readable, (line) => this.onLine(line)],
    ];
    if (stamped) {
      streams.push([
        this.child.stdio[4] as Readable,
        (line) => {
          const stamp = readStamp(line);
          if (stamp) this.pushTimestamp(stamp);
        },
      ]);
    }
    let pendingLines = streams.length;
    for (const [stream, onLine] of streams) {
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      lines.on('line', onLine);
      lines.once('close', () => {
        if (--pendingLines === 0) {
          this.linesDone = true;
          this.wakeTimestampWaiter();
        }
      });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The size of the pictures the decoder reads (before the ROI and the scaling), when it says so. */
  get sourceSize(): Size | undefined {
    return this.size;
  }

  /** The decoded frames, in order, until the decoder ends or is stopped. */
  async *frames(): AsyncGenerator<DecodedFrame> {
    const out = this.child.stdio[3] as Readable | null;
    if (!out) return;
    const size = this.options.frameBytes;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for await (const chunk of out as AsyncIterable<Buffer>) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes < size) continue;
      const all = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
      let offset = 0;
      for (; offset + size <= all.length; offset += size) {
        const stamp = await this.nextTimestamp();
        // Frames are copied out: `all` may be one of the stream's pooled chunks.
        const data = Buffer.from(all.subarray(offset, offset + size));
        if (stamp) yield { ...stamp, data };
      }
      pending = offset < all.length ? [all.subarray(offset)] : [];
      pendingBytes = all.length - offset;
    }
  }

  /** Waits for the decoder to exit; the failure it names, if any (a clean end of input has none). */
  async ended(): Promise<DecoderEnd> {
    const { code, signal } = await this.exited;
    if (this.failure) return { error: this.failure };
    if (code === 0) return {};
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const said = this.cause ?? this.lastProblem;
    const last = said ? `; ${this.cause ? 'it said' : 'last message'}: ${said}` : '';
    return { error: new SgmoeError('E_SOURCE_DECODER', `expected the decoder of ${this.options.source} to keep running, found it ${how}${last}`, { code, signal }) };
  }

  /** Ends the decoder (SIGTERM, then SIGKILL after a grace period) and waits for it. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const kill = setTimeout(() => this.child.kill('SIGKILL'), TERM_GRACE_MS);
      await this.exited;
      clearTimeout(kill);
    }
    await this.exited;
  }

  private onLine(line: string): void {
    const { pipeline, source, redact, onCorrupt, logger } = this.options;
    const read = readDecoderLine(pipeline.dialect, line, source, redact);
    if (read.kind === 'frame') {
      this.pushTimestamp({ pts: read.pts, seconds: read.seconds });
    } else if (read.kind === 'input') {
      this.size ??= { width: read.width, height: read.height };
    } else if (read.kind === 'described') {
      this.described = true;
      this.wakeTimestampWaiter();
    } else if (read.kind === 'corrupt') {
      this.lastProblem = read.text;
      onCorrupt(read.text);
    } else if (read.kind === 'failure') {
      // The first named failure is the cause; later lines are usually its consequences.
      this.failure ??= read.error;
      this.lastProblem = read.error.message;
      logger.debug({ line: redact(line) }, 'decoder failure');
    } else if (read.kind === 'error') {
      // Later error lines are mostly its consequences ("Error reinitializing filters!", "Conversion failed!").
      this.cause ??= read.text;
    }
  }

  private pushTimestamp(stamp: { pts: number; seconds: number }): void {
    this.timestamps.push(stamp);
    this.wakeTimestampWaiter();
  }

  /**
   * The pts of the next frame, which its log line may bring a moment after the pixels (undefined if it never comes);
   * the input's size is known by then.
   */
  private async nextTimestamp(): Promise<{ pts: number; seconds: number } | undefined> {
    while (!this.linesDone && (this.timestamps.length === 0 || !this.described)) {
      await new Promise<void>((resolve) => (this.timestampWaiter = resolve));
    }
    return this.timestamps.shift();
  }

  private wakeTimestampWaiter(): void {
    const wake = this.timestampWaiter;
    this.timestampWaiter = undefined;
    wake?.();
  }
}
