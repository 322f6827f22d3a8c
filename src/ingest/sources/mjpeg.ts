import { SgmoeError } from '../../errors';
import { boundaryOf, MultipartParser } from '../multipart';
import { Backoff, sleep, type BackoffOptions } from '../retry';
import { BaseSource, LIVE_DEFAULTS, type SourceOptions } from '../source';
import { asFetchError, httpStatusError } from './http';

export interface MjpegSourceOptions extends SourceOptions {
  /** Longest wait for the connection or for the next bytes of the stream before reconnecting (default 5000 ms). */
  timeoutMs?: number;
  /** Waits between reconnections. */
  backoff?: BackoffOptions;
  /** A part larger than this is skipped (default 16 MiB). */
  maxPartBytes?: number;
}

/**
 * `mjpeg+http://…` MJPEG stream (multipart/x-mixed-replace). Each part is a frame; a stalled, dropped or
 * malformed stream is a source error and the source reconnects with backoff. Garbage inside a part becomes
 * a frame that the preprocessing rejects, so it is counted like any bad frame.
 */
export class MjpegSource extends BaseSource {
  readonly kind = 'mjpeg' as const;
  /** The plain http(s) URL fetched. */
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly maxPartBytes?: number;
  private readonly backoff: Backoff;

  constructor(uri: string, options: MjpegSourceOptions = {}) {
    super(uri, options, LIVE_DEFAULTS);
    this.url = uri.replace(/^mjpeg\+/, '');
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.maxPartBytes = options.maxPartBytes;
    this.backoff = new Backoff(options.backoff);
  }

  protected async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.stream(signal);
        throw new SgmoeError('E_SOURCE_STREAM', `expected an endless MJPEG stream from ${this.url}, found its end`);
      } catch (err) {
        if (signal.aborted) return;
        this.reportError(asFetchError(err, this.url, this.timeoutMs));
        await sleep(this.backoff.next(), signal);
      }
    }
  }

  /** Reads one connection until it ends or stalls for `timeoutMs`. */
  private async stream(signal: AbortSignal): Promise<void> {
    const stall = new AbortController();
    let timer = setTimeout(() => stall.abort(timeoutError()), this.timeoutMs);
    const alive = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => stall.abort(timeoutError()), this.timeoutMs);
    };
    try {
      const response = await fetch(this.url, { signal: AbortSignal.any([signal, stall.signal]) });
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw httpStatusError(response, this.url);
      }
      const boundary = boundaryOf(response.headers.get('content-type'));
      if (!boundary) {
        await response.body.cancel();
        throw new SgmoeError(
          'E_SOURCE_STREAM',
          `expected multipart/x-mixed-replace with a boundary from ${this.url}, found ${response.headers.get('content-type') ?? 'no content type'}`,
        );
      }
      const parser = new MultipartParser(boundary, this.maxPartBytes);
      try {
        for await (const chunk of response.body) {
          alive();
          const { parts, problems } = parser.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          for (const problem of problems) this.reportError(new SgmoeError('E_SOURCE_STREAM', `${this.url}: ${problem}`));
          for (const part of parts) {
            this.backoff.reset();
            await this.emit({ id: this.nextId(), source: this.name, receivedAt: Date.now(), bytes: part.body, meta: { url: this.url } });
          }
        }
      } catch (err) {
        if ((err as { name?: string }).name === 'TimeoutError' || signal.aborted) throw err;
        // Connected, then cut off: a part in progress is lost with the connection (it never became a frame).
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
        throw new SgmoeError('E_SOURCE_STREAM', `expected the MJPEG stream from ${this.url} to go on, found it cut off (${cause})`, undefined, { cause: err });
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

function timeoutError(): Error {
  return Object.assign(new Error('stalled'), { name: 'TimeoutError' });
}
