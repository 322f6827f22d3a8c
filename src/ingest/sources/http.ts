import { SgmoeError, errorMessage } from '../../errors';
import { Backoff, sleep, type BackoffOptions } from '../retry';
import { BaseSource, LIVE_DEFAULTS, type SourceOptions } from '../source';

export interface HttpSourceOptions extends SourceOptions {
  /** Time between the starts of two snapshots (default 1000 ms). */
  intervalMs?: number;
  /** Longest a snapshot (connect + body) may take (default 5000 ms). */
  timeoutMs?: number;
  /** Waits between retries after a failure. */
  backoff?: BackoffOptions;
}

/**
 * `http://…` snapshot polling of an IP camera's JPEG endpoint. A failed snapshot (timeout, refused, non-2xx)
 * is a source error, retried with exponential backoff; whatever bytes a 2xx brings become a frame, and the
 * preprocessing judges them (garbage is rejected with an E_FRAME_* code).
 */
export class HttpSnapshotSource extends BaseSource {
  readonly kind = 'http' as const;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly backoff: Backoff;

  constructor(
    readonly url: string,
    options: HttpSourceOptions = {},
  ) {
    super(url, options, LIVE_DEFAULTS);
    this.intervalMs = options.intervalMs ?? 1000;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.backoff = new Backoff(options.backoff);
  }

  protected async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = Date.now();
      let bytes: Buffer;
      try {
        bytes = await this.snapshot(signal);
      } catch (err) {
        if (signal.aborted) return;
        this.reportError(asFetchError(err, this.url, this.timeoutMs));
        await sleep(this.backoff.next(), signal);
        continue;
      }
      this.backoff.reset();
      await this.emit({ id: this.nextId(), source: this.name, receivedAt: Date.now(), bytes, meta: { url: this.url } });
      await sleep(this.intervalMs - (Date.now() - started), signal);
    }
  }

  private async snapshot(signal: AbortSignal): Promise<Buffer> {
    const response = await fetch(this.url, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]) });
    if (!response.ok) {
      await response.body?.cancel();
      throw httpStatusError(response, this.url);
    }
    return Buffer.from(await response.arrayBuffer());
  }
}

export function httpStatusError(response: Response, url: string): SgmoeError {
  return new SgmoeError('E_SOURCE_HTTP', `expected HTTP 2xx from ${url}, found ${response.status} ${response.statusText}`, {
    status: response.status,
  });
}

/** A failed fetch as the source error it stands for: timeout, unreachable, or our own error unchanged. */
export function asFetchError(err: unknown, url: string, timeoutMs: number): SgmoeError {
  if (err instanceof SgmoeError) return err;
  const name = (err as { name?: string }).name;
  if (name === 'TimeoutError') {
    return new SgmoeError('E_SOURCE_TIMEOUT', `expected data from ${url} within ${timeoutMs} ms, found none in time`, { timeoutMs });
  }
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return new SgmoeError('E_SOURCE_UNREACHABLE', `expected to reach ${url}, found ${cause?.code ?? cause?.message ?? errorMessage(err)}`, undefined, {
    cause: err,
  });
}
