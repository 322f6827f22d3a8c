import { open, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SgmoeError, errorMessage } from '../errors';

export interface DownloadOptions {
  /** Refuse anything larger (declared or received). */
  maxBytes: number;
  /** The whole download, resumed part included, must finish within this. */
  timeoutMs: number;
  /** Abort when no byte arrived for this long (a server that holds the connection open and sends nothing). */
  stallMs?: number;
  /** Aborts the download from outside (a newer request replaces this one); it rejects with the signal's reason. */
  signal?: AbortSignal;
  onProgress?: (received: number, total: number | null) => void;
}

export interface DownloadResult {
  bytes: number;
  /** Bytes that were already in `dest.part` from an earlier, interrupted attempt. */
  resumedFrom: number;
}

/** Total size from `Content-Range: bytes a-b/total`, or null when the server does not say. */
function rangeTotal(header: string | null): number | null {
  const m = header ? /\/(\d+)\s*$/.exec(header) : null;
  return m ? Number(m[1]) : null;
}

/**
 * Downloads `url` to `dest` through `dest.part`. An interrupted download leaves the part file, and the next
 * attempt asks only for the rest (HTTP Range); a server that ignores the range sends it all again.
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const have = (await stat(part).catch(() => null))?.size ?? 0;
  const stall = new StallTimer(options.stallMs);
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs), stall.signal, ...(options.signal ? [options.signal] : [])]);
  const timedOut = (err: unknown): SgmoeError => {
    if (options.signal?.aborted && options.signal.reason instanceof SgmoeError) return options.signal.reason;
    if (stall.signal.aborted) {
      return new SgmoeError('E_DOWNLOAD_TIMEOUT', `download of ${url} stalled: no byte for ${options.stallMs} ms (the part kept resumes next time)`, { stallMs: options.stallMs });
    }
    return signal.aborted
      ? new SgmoeError('E_DOWNLOAD_TIMEOUT', `download of ${url} did not finish within ${options.timeoutMs} ms (the part kept resumes next time)`)
      : fetchFailure(url, err);
  };
  try {
    return await transfer({ url, dest, part, have, signal, stall, options, timedOut });
  } finally {
    stall.stop();
  }
}

interface Transfer {
  url: string;
  dest: string;
  part: string;
  /** Bytes already in the part file. */
  have: number;
  signal: AbortSignal;
  stall: StallTimer;
  options: DownloadOptions;
  /** The error for a failed or aborted fetch: which limit ended it. */
  timedOut: (err: unknown) => SgmoeError;
}

async function transfer({ url, dest, part, have, signal, stall, options, timedOut }: Transfer): Promise<DownloadResult> {
  let response: Response;
  try {
    response = await fetch(url, { signal, headers: have > 0 ? { range: `bytes=${have}-` } : {} });
  } catch (err) {
    throw timedOut(err);
  }
  if (response.status === 416 && have > 0 && rangeTotal(response.headers.get('content-range')) === have) {
    // The part is already whole: an earlier attempt stopped between the last byte and the rename.
    await response.body?.cancel();
    await rename(part, dest);
    return { bytes: have, resumedFrom: have };
  }
  const resumed = response.status === 206;
  if (!(response.ok && (response.status === 200 || resumed))) {
    await response.body?.cancel();
    // A server error or overload may pass; a 4xx (no such package, not allowed) will not by waiting.
    const passing = response.status >= 500 || response.status === 408 || response.status === 429;
    throw new SgmoeError(
      passing ? 'E_DOWNLOAD_HTTP' : 'E_DOWNLOAD_NOT_SERVED',
      `GET ${url}: expected 200 or 206, found ${response.status} ${response.statusText}${passing ? '' : ' (check the --url given to publish)'}`,
      { status: response.status },
    );
  }
  const start = resumed ? have : 0;
  const length = response.headers.get('content-length');
  const total = resumed ? rangeTotal(response.headers.get('content-range')) : length === null ? null : Number(length);
  const tooLarge = (size: number): SgmoeError =>
    new SgmoeError('E_DOWNLOAD_TOO_LARGE', `${url} is ${size} bytes or more, the limit is ${options.maxBytes}`, { limit: options.maxBytes, size });
  if (total !== null && total > options.maxBytes) {
    await response.body?.cancel();
    await rm(part, { force: true });
    throw tooLarge(total);
  }

  const file = await open(part, resumed ? 'a' : 'w');
  let received = start;
  try {
    if (response.body) {
      for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
        stall.progress();
        received += (chunk as Buffer).length;
        if (received > options.maxBytes) throw tooLarge(received);
        await file.write(chunk as Buffer);
        options.onProgress?.(received, total);
      }
    }
    await file.sync();
  } catch (err) {
    await file.close();
    if (err instanceof SgmoeError) {
      await rm(part, { force: true });
      throw err;
    }
    throw timedOut(err);
  }
  await file.close();
  if (total !== null && received !== total) {
    throw new SgmoeError('E_DOWNLOAD_FAILED', `download of ${url} ended at ${received} of ${total} bytes (the part kept resumes next time)`);
  }
  await rename(part, dest);
  return { bytes: received, resumedFrom: start };
}

/** Aborts its signal when `progress()` was not called for `ms` (never, without `ms`). */
class StallTimer {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number | undefined) {
    this.progress();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  progress(): void {
    if (this.ms === undefined || this.controller.signal.aborted) return;
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(() => this.controller.abort(), this.ms);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/** What a failed connection says about its cause, by the system error under fetch's "fetch failed". */
const CAUSES: Array<{ codes: RegExp; code: 'E_DOWNLOAD_REFUSED' | 'E_DOWNLOAD_DNS' | 'E_DOWNLOAD_TLS'; says: string }> = [
  { codes: /^ECONNREFUSED$/, code: 'E_DOWNLOAD_REFUSED', says: 'the connection was refused (is the package server running, on that host and port?)' },
  { codes: /^(ENOTFOUND|EAI_AGAIN|EAI_NONAME|EAI_FAIL)$/, code: 'E_DOWNLOAD_DNS', says: 'the host name did not resolve (DNS)' },
  { codes: /^(ERR_SSL_|ERR_TLS_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_)/, code: 'E_DOWNLOAD_TLS', says: 'the TLS handshake or the server certificate failed' },
];

function fetchFailure(url: string, err: unknown): SgmoeError {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const system = typeof cause?.code === 'string' ? cause.code : '';
  const detail = `${system ? `${system}: ` : ''}${typeof cause?.message === 'string' ? cause.message.split('\n')[0] : errorMessage(err)}`;
  // fetch refuses ports on its blocked list (e.g. 9, 25, 6000) before connecting: waiting does not help.
  if (!system && cause?.message === 'bad port') {
    return new SgmoeError('E_DOWNLOAD_URL', `download of ${url} failed: fetch refuses that port (it is on its blocked list): serve the package on another port`, undefined, { cause: err });
  }
  const known = CAUSES.find((c) => c.codes.test(system));
  if (known) return new SgmoeError(known.code, `download of ${url} failed: ${known.says} (${detail})`, { cause: system }, { cause: err });
  return new SgmoeError('E_DOWNLOAD_FAILED', `download of ${url} failed: ${detail}`, system ? { cause: system } : undefined, { cause: err });
}

export interface RetryOptions {
  /** Attempts after the first. */
  retries: number;
  /** The first pause; each next one doubles, up to 30 s. */
  backoffMs: number;
  onRetry?: (attempt: number, error: SgmoeError, pauseMs: number) => void | Promise<void>;
}

/**
 * Downloads with retries: a connection that failed (refused, DNS, cut short, a 5xx) is tried again after a
 * growing pause, resuming what the part file holds. Not retried: a stall or the overall deadline (they already
 * waited their limit), a refusal that waiting does not fix (TLS, a 4xx, too large), an abort from outside.
 */
export async function downloadWithRetry(url: string, dest: string, options: DownloadOptions & RetryOptions): Promise<DownloadResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await downloadFile(url, dest, options);
    } catch (err) {
      const error = err instanceof SgmoeError ? err : new SgmoeError('E_DOWNLOAD_FAILED', errorMessage(err), undefined, { cause: err });
      if (attempt > options.retries || !RETRIED.has(error.code) || options.signal?.aborted) throw error;
      const pauseMs = Math.min(options.backoffMs * 2 ** (attempt - 1), 30_000);
      await options.onRetry?.(attempt, error, pauseMs);
      await sleep(pauseMs, undefined, options.signal ? { signal: options.signal } : undefined).catch(() => undefined);
      if (options.signal?.aborted) throw options.signal.reason instanceof SgmoeError ? options.signal.reason : error;
    }
  }
}

const RETRIED = new Set(['E_DOWNLOAD_REFUSED', 'E_DOWNLOAD_DNS', 'E_DOWNLOAD_FAILED', 'E_DOWNLOAD_HTTP']);
